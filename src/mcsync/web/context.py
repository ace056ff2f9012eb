"""What every route needs: settings, the token cipher, who the caller is, Postgres and HTTP."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar
from uuid import UUID

import httpx
import psycopg
from fastapi import Depends, HTTPException, Request

from mcsync.config import Settings
from mcsync.connections import Connection
from mcsync.crypto import TokenCipher
from mcsync.database import Database
from mcsync.logging import get_logger
from mcsync.mailchimp.client import ClientFactory, MailchimpClient
from mcsync.reconcile import SYNC_NOW_INTERVAL
from mcsync.web.auth import AuthError, StateSigner, TokenVerifier, UserClaims, VerifierUnavailable

T = TypeVar("T")
log = get_logger("mcsync.web")


@dataclass
class WebContext:
    settings: Settings
    cipher: TokenCipher
    verifier: TokenVerifier  # the app users' JWTs
    signer: StateSigner  # mcsync's own OAuth states
    database: Database  # the process's one pool: routes, Sync Now's runs, the sweeper, audits
    sync_now_interval: float = SYNC_NOW_INTERVAL
    sweep_interval: float = 60.0
    http: httpx.AsyncClient | None = None
    owner: str = field(default_factory=lambda: f"web-{socket.gethostname()}-{os.getpid()}")
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    running: set[UUID] = field(default_factory=set)

    async def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a sync psycopg function (connections.py) on a pooled connection, off the loop
        (`Database.run`)."""
        return await self.database.run(fn, *args, **kwargs)

    @property
    def app_origins(self) -> list[str]:
        raw = self.settings.mcsync_app_origin
        return [o.strip().rstrip("/") for o in raw.split(",") if o.strip()]

    def client_for(self, connection: Connection) -> MailchimpClient:
        return ClientFactory.from_settings(self.settings, self.http).client(
            connection.dc,
            connection.access_token(self.cipher),
            log_context={"user_id": str(connection.user_id)},
        )


def ctx_of(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.mcsync
    return ctx


SIGN_IN_AGAIN = "Sign in again to manage email sync."


class Unauthorized(HTTPException):
    """A 401 whose body and `WWW-Authenticate` name only the kind of failure (`reason`)."""

    def __init__(self, reason: str) -> None:
        challenge = (
            "Bearer"
            if reason == "missing"
            else (f'Bearer error="invalid_token", error_description="{reason}"')
        )
        super().__init__(401, SIGN_IN_AGAIN, headers={"WWW-Authenticate": challenge})
        self.reason = reason


def verified_claims(request: Request) -> UserClaims:
    """FastAPI dependency: the verified claims of `Authorization: Bearer <jwt>`; a 401
    (Unauthorized) naming the kind of failure otherwise, or a 503 while the app's keys cannot
    be fetched at all. Sync on purpose: a JWKS fetch blocks, so FastAPI runs this in its
    thread pool."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing")
    try:
        return ctx_of(request).verifier.verify(token.strip())
    except VerifierUnavailable:
        log.warning("auth_unavailable", reason="keys_unavailable")
        raise HTTPException(
            503,
            "Sign-in can't be checked right now. Please try again in a minute.",
            headers={"Retry-After": "30"},
        ) from None
    except AuthError as exc:
        log.info("auth_refused", reason=exc.kind, path=request.url.path)
        raise Unauthorized(exc.kind) from None


def current_user(request: Request) -> UUID:
    """FastAPI dependency: the user id of a valid `Authorization: Bearer <jwt>`, else 401."""
    return verified_claims(request).user_id


CurrentUser = Annotated[UUID, Depends(current_user)]
VerifiedClaims = Annotated[UserClaims, Depends(verified_claims)]


def connection_or_409(conn: psycopg.Connection[Any], user_id: UUID) -> Connection:
    from mcsync.connections import get_connection

    found = get_connection(conn, user_id)
    if found is None:
        raise HTTPException(409, "Mailchimp is not connected.")
    return found
