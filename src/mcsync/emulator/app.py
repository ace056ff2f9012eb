"""ASGI app factory: composes the API, OAuth and admin routes and logs requests."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .admin import admin_routes
from .api import api_routes
from .oauth import oauth_routes
from .runtime import Emulator, Limits

LOGGED_PREFIXES = ("/3.0", "/oauth2")


class RequestLog:
    """ASGI middleware recording {method, path, status, at} for API and OAuth requests only
    (admin calls are left out so polling the state does not pollute the log)."""

    def __init__(self, app: ASGIApp, emu: Emulator) -> None:
        self.app = app
        self.emu = emu

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(LOGGED_PREFIXES):
            await self.app(scope, receive, send)
            return
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            # Log after the response so the status is known; a dropped request logs as 500.
            self.emu.store.log(scope["method"], scope["path"], status)


def create_app(
    per_call_ms: float = 0,
    per_member_ms: float = 0,
    seed_accounts: list[dict[str, Any]] | None = None,
) -> Starlette:
    """A fresh emulator. `seed_accounts` are created now and again on every reset."""
    emu = Emulator(
        limits=Limits(per_call_ms=per_call_ms, per_member_ms=per_member_ms),
        seed_accounts=list(seed_accounts or []),
        initial_latency=(per_call_ms, per_member_ms),
    )
    for spec in emu.seed_accounts:
        emu.create_account(spec)
    app = Starlette(routes=[*api_routes(emu), *oauth_routes(emu), *admin_routes(emu)])
    app.state.emulator = emu
    app.add_middleware(RequestLog, emu=emu)
    return app
