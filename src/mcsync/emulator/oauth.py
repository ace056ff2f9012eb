"""Mailchimp's OAuth 2 authorization-code flow: authorize page, token exchange, metadata.

Client rules: clients registered through POST /_emulator/oauth/clients are checked strictly
(known id, matching secret, and the registered redirect_uri if one was given). While none are
registered, any client_id/secret pair is accepted, but the token exchange must still repeat the
exact client_id and redirect_uri used at authorize time.
"""

from __future__ import annotations

import html
import secrets
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from .runtime import AuthCode, Emulator

CODE_TTL_S = 600
Endpoint = Callable[[Request], Awaitable[Response]]


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html><head><title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>",
        status_code=status,
    )


def _client_problem(emu: Emulator, client_id: str, redirect_uri: str) -> str | None:
    if not client_id:
        return "client_id is required"
    if not redirect_uri:
        return "redirect_uri is required"
    if emu.oauth_clients:
        client = emu.oauth_clients.get(client_id)
        if client is None:
            return "unknown client_id"
        if client.redirect_uri is not None and client.redirect_uri != redirect_uri:
            return "redirect_uri does not match the registered one"
    return None


def _with_query(uri: str, params: dict[str, str]) -> str:
    return uri + ("&" if "?" in uri else "?") + urlencode(params)


def authorize_page(emu: Emulator) -> Endpoint:
    async def authorize(request: Request) -> Response:
        q = request.query_params if request.method == "GET" else await request.form()
        client_id = str(q.get("client_id") or "")
        redirect_uri = str(q.get("redirect_uri") or "")
        state = str(q.get("state") or "")
        if str(q.get("response_type") or "") != "code":
            return _page("Invalid request", "<p>response_type must be code</p>", 400)
        problem = _client_problem(emu, client_id, redirect_uri)
        if problem:
            return _page("Invalid request", f"<p>{html.escape(problem)}</p>", 400)
        if request.method == "POST":
            return _decide(
                emu,
                q.get("decision") == "allow",
                str(q.get("account") or ""),
                client_id,
                redirect_uri,
                state,
            )
        accounts = emu.store.accounts
        if not accounts:
            return _page("No accounts", "<p>Create one with POST /_emulator/accounts.</p>", 409)
        # Nothing is chosen for the user: Mailchimp's own screen asks who is signing in, and a
        # preselected account would let a hurried Enter connect the wrong one.
        chosen = str(q.get("account") or "")
        placeholder = (
            f'<option value=""{"" if chosen else " selected"} disabled>'
            "Choose an account\u2026</option>"
        )
        options = placeholder + "".join(
            f'<option value="{html.escape(a.account_id)}"'
            f"{' selected' if chosen in (a.account_id, a.account_name) else ''}>"
            f"{html.escape(a.account_name)} ({html.escape(a.dc)})</option>"
            for a in accounts
        )
        hidden = "".join(
            f'<input type="hidden" name="{k}" value="{html.escape(v)}">'
            for k, v in (
                ("response_type", "code"),
                ("client_id", client_id),
                ("redirect_uri", redirect_uri),
                ("state", state),
            )
        )
        form = (
            f'<form method="post" action="/oauth2/authorize">{hidden}'
            f"<p>Allow <b>{html.escape(client_id)}</b> to access:</p>"
            '<p><label for="account">Account</label> '
            f'<select id="account" name="account" required>{options}</select></p>'
            '<button type="submit" name="decision" value="allow">Allow</button>'
            '<button type="submit" name="decision" value="deny" formnovalidate>Deny</button>'
            "</form>"
        )
        return _page("Mailchimp emulator: authorize app", form)

    return authorize


def _decide(
    emu: Emulator, allow: bool, account_ref: str, client_id: str, redirect_uri: str, state: str
) -> Response:
    extra = {"state": state} if state else {}
    if not allow:
        return RedirectResponse(_with_query(redirect_uri, {"error": "access_denied", **extra}), 302)
    if not account_ref:
        return _page("Invalid request", "<p>choose an account</p>", 400)
    account = emu.store.account_by_id(account_ref)
    if account is None:
        return _page("Invalid request", "<p>unknown account</p>", 400)
    code = secrets.token_hex(16)
    emu.codes[code] = AuthCode(
        code, client_id, redirect_uri, account.account_id, time.time() + CODE_TTL_S
    )
    return RedirectResponse(_with_query(redirect_uri, {"code": code, **extra}), 302)


def _oauth_error(error: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": error}, status_code=status)


def token_endpoint(emu: Emulator) -> Endpoint:
    async def token(request: Request) -> Response:
        if not request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            return _oauth_error("invalid_request")
        form = await request.form()
        f = {k: str(v) for k, v in form.items()}
        if f.get("grant_type") != "authorization_code":
            return _oauth_error("unsupported_grant_type")
        # Single use: any attempt consumes the code, even a failing one (strict choice).
        grant = emu.codes.pop(f.get("code", ""), None)
        client = emu.oauth_clients.get(f.get("client_id", ""))
        if emu.oauth_clients and (client is None or client.client_secret != f.get("client_secret")):
            return _oauth_error("invalid_client")
        if not f.get("client_secret"):
            return _oauth_error("invalid_client")
        if grant is None or grant.expires_at < time.time():
            return _oauth_error("invalid_grant")
        if grant.client_id != f.get("client_id") or grant.redirect_uri != f.get("redirect_uri"):
            return _oauth_error("invalid_grant")
        account = emu.store.account_by_id(grant.account_id)
        if account is None:
            return _oauth_error("invalid_grant")
        if account.access_token in emu.store.revoked:
            # Re-authorizing after a revoke issues a fresh token for the account.
            account.access_token = secrets.token_hex(16)
        return JSONResponse({"access_token": account.access_token, "expires_in": 0, "scope": None})

    return token


def metadata_endpoint(emu: Emulator) -> Endpoint:
    async def metadata(request: Request) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        account = emu.store.account_by_token(token.strip()) if scheme == "OAuth" else None
        if account is None:
            return JSONResponse(
                {"error": "invalid_token", "error_description": "Invalid or revoked token"},
                status_code=401,
            )
        base = str(request.base_url).rstrip("/")
        return JSONResponse(
            {
                "dc": account.dc,
                "role": "owner",
                "accountname": account.account_name,
                "user_id": account.user_id,
                "login": {
                    "email": account.login_email,
                    "avatar": None,
                    "login_id": account.login_id,
                    "login_name": account.login_email,
                    "login_email": account.login_email,
                },
                "login_url": base,
                "api_endpoint": base,
            }
        )

    return metadata


def oauth_routes(emu: Emulator) -> list[BaseRoute]:
    return [
        Route("/oauth2/authorize", authorize_page(emu), methods=["GET", "POST"]),
        Route("/oauth2/token", token_endpoint(emu), methods=["POST"]),
        Route("/oauth2/metadata", metadata_endpoint(emu), methods=["GET", "POST"]),
    ]
