"""What every /3.0 request passes before its handler: auth, the 10-connection cap, injected
faults, X-Trigger-Error, and the latency model. Errors are rendered as problem+json."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .errors import (
    ApiError,
    for_status,
    from_trigger,
    glossary_error,
    new_request_id,
    problem_response,
)
from .runtime import Emulator
from .state import Account, Audience


@dataclass
class ApiCall:
    """One authenticated API request, as handlers see it."""

    request: Request
    account: Account
    body: Any
    request_id: str
    emulator: Emulator

    def audience(self) -> Audience:
        audience = self.account.audiences.get(self.request.path_params["list_id"])
        if audience is None:  # other accounts' audiences are invisible too
            raise glossary_error("ResourceNotFound")
        return audience

    def flag(self, name: str) -> bool:
        """Mailchimp's query booleans: case-insensitive true/1; anything else is false."""
        return self.request.query_params.get(name, "").lower() in ("true", "1")


Handler = Callable[[ApiCall], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


def token_of(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return ""
        return decoded.partition(":")[2]
    return None


def _account(emu: Emulator, token: str | None) -> Account:
    if token is None:
        raise glossary_error("APIKeyMissing")
    account = emu.store.account_by_token(token)
    if account is None and "-" in token:  # API-key style "<token>-<dc>"
        bare, _, dc = token.rpartition("-")
        account = emu.store.account_by_token(bare)
        if account is not None and account.dc != dc:
            account = None
    if account is None:
        raise glossary_error("APIKeyInvalid")
    return account


async def _read_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise glossary_error("JSONParseError") from None


def api_endpoint(emu: Emulator, handler: Handler, *, batch: bool = False) -> Endpoint:
    """Wrap a handler with Mailchimp's request pipeline."""

    async def endpoint(request: Request) -> Response:
        rid = new_request_id()
        try:
            token = token_of(request)
            account = _account(emu, token)
        except ApiError as err:
            return problem_response(err, rid)
        limits = emu.limits
        if account.in_flight >= limits.max_in_flight:
            limits.refusals += 1
            every = limits.bodiless_429_every
            bodiless = every > 0 and limits.refusals % every == 0
            return problem_response(glossary_error("TooManyRequests"), rid, bodiless=bodiless)
        account.in_flight += 1
        try:
            return await _guarded(emu, handler, request, account, token, rid, batch)
        except ApiError as err:
            return problem_response(err, rid)
        finally:
            account.in_flight -= 1

    return endpoint


async def _guarded(
    emu: Emulator,
    handler: Handler,
    request: Request,
    account: Account,
    token: str | None,
    rid: str,
    batch: bool,
) -> Response:
    # The raw body only when a fault looks into bodies (Starlette keeps it for the handler).
    text = ""
    if request.method in ("POST", "PUT", "PATCH") and any(
        f.body_contains for f in emu.faults.items
    ):
        text = (await request.body()).decode(errors="replace")
    fault = emu.faults.pick(request.method, request.url.path, token, text)
    if fault is not None:
        if fault.timeout is not None:
            await asyncio.sleep(fault.timeout)  # holds the connection slot, like Mailchimp
            return problem_response(for_status(504), rid, bodiless=fault.bodiless)
        return problem_response(for_status(fault.status or 500), rid, bodiless=fault.bodiless)
    trigger = request.headers.get("x-trigger-error")
    if trigger:
        err = from_trigger(trigger)
        if err is not None:
            raise err
    body = await _read_body(request) if request.method in ("POST", "PUT", "PATCH") else None
    members = 0
    if batch and isinstance(body, dict) and isinstance(body.get("members"), list):
        members = len(body["members"])
    delay = emu.limits.per_call_ms + emu.limits.per_member_ms * members
    if delay > 0:
        await asyncio.sleep(delay / 1000)
    response = await handler(ApiCall(request, account, body, rid, emu))
    response.headers["X-Request-Id"] = rid
    return response
