"""`create_app(settings)`: the FastAPI app behind `mcsync web`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from mcsync.config import Settings
from mcsync.connection_states import PAUSED_NOTICE, unusable_state
from mcsync.crypto import EncryptionKeyError, TokenCipher
from mcsync.database import Database
from mcsync.logging import get_logger
from mcsync.mailchimp.client import make_http_client
from mcsync.mailchimp.endpoints import InvalidDataCenter
from mcsync.reconcile import SYNC_NOW_INTERVAL
from mcsync.web import admin, oauth, routes
from mcsync.web.auth import StateSigner, TokenVerifier
from mcsync.web.context import Unauthorized, WebContext
from mcsync.web.operators import OperatorRule, OperatorRuleError
from mcsync.web.runs import stop_all, sweep

log = get_logger("mcsync.web")

STATIC_DIR = Path(__file__).resolve().parent / "static"
# How the web process's connections show in pg_stat_activity.
WEB_APPLICATION_NAME = "mcsync-web"


class ConfigError(RuntimeError):
    """The web app cannot start with these settings; the message says what to set."""


def create_app(
    settings: Settings,
    *,
    sync_now_interval: float = SYNC_NOW_INTERVAL,
    sweep_interval: float = 60.0,
) -> FastAPI:
    """Refuses (ConfigError / EncryptionKeyError) without a database, an encryption key, or a
    way to verify users (a JWKS URL or the legacy JWT secret)."""
    if not settings.database_url:
        raise ConfigError("set DATABASE_URL (or --database-url)")
    cipher = TokenCipher.from_setting(settings.mcsync_encryption_keys)
    try:
        verifier = TokenVerifier.from_settings(settings)
        signer = StateSigner.from_settings(settings)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    try:
        operators = OperatorRule.from_settings(
            settings.mcsync_operator_ids, settings.mcsync_operator_claim
        )
    except OperatorRuleError as exc:
        raise ConfigError(str(exc)) from None
    # The process's one pool (issue 18): every route, Sync Now's runs, the sweeper, audits.
    database = Database.for_url(settings.database_url, application_name=WEB_APPLICATION_NAME)
    ctx = WebContext(
        settings=settings,
        cipher=cipher,
        verifier=verifier,
        signer=signer,
        database=database,
        sync_now_interval=sync_now_interval,
        sweep_interval=sweep_interval,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        database.open()
        log.info(
            "web_auth",
            jwks_url=verifier.jwks.url if verifier.jwks else None,
            legacy_secret=bool(settings.mcsync_jwt_secret),
            audiences=settings.jwt_audiences,
            issuer=settings.mcsync_jwt_issuer or None,
            allow_anonymous=settings.mcsync_jwt_allow_anonymous,
            state_secret="dedicated" if settings.state_secrets else "derived",
        )
        if verifier.jwks is not None:
            # Fetch the keys now (off the loop, not waited for): the first user is not kept
            # waiting, and an unreachable JWKS shows in the log at start.
            asyncio.get_running_loop().run_in_executor(None, verifier.jwks.refresh)
        ctx.http = make_http_client(settings.mcsync_http_timeout)
        sweeper = asyncio.get_running_loop().create_task(sweep(ctx))
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await stop_all(ctx)
            http: httpx.AsyncClient = ctx.http
            await http.aclose()
            database.close()

    app = FastAPI(
        title="mcsync", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.mcsync = ctx
    app.state.mcsync_operators = operators
    if ctx.app_origins:
        # The widget runs on the app's origin and calls us with a Bearer header, no cookies.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=ctx.app_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Retry-After"],
            max_age=600,
        )
    app.include_router(routes.router)
    app.include_router(oauth.router)
    app.include_router(admin.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    async def unusable_connection(_: Request, exc: Exception) -> JSONResponse:
        # No call is made with a connection mcsync cannot use. One the operator fixes (a key
        # missing, a token not yet bound) reads as paused; a stored row that is wrong (a forged
        # dc, another user's token) asks the user to connect again.
        assert isinstance(exc, InvalidDataCenter | EncryptionKeyError)
        state, reason = unusable_state(exc)
        log.warning("connection_unusable", reason=reason, error=str(exc))
        detail = routes.RECONNECT if state == "error" else PAUSED_NOTICE
        return JSONResponse({"detail": detail, "reason": reason}, status_code=409)

    async def unauthorized(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Unauthorized)
        return JSONResponse(
            {"detail": exc.detail, "reason": exc.reason},
            status_code=401,
            headers=exc.headers,
        )

    app.add_exception_handler(Unauthorized, unauthorized)
    app.add_exception_handler(InvalidDataCenter, unusable_connection)
    app.add_exception_handler(EncryptionKeyError, unusable_connection)  # subclasses too

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    return app
