"""Mailchimp's OAuth 2 authorization-code flow: authorize URL, code exchange, metadata.

Tokens never expire and have no refresh token; a 401 later means the user revoked the app.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlencode

import httpx
from pydantic import ValidationError

from mcsync.mailchimp.client import log_call, make_http_client
from mcsync.mailchimp.errors import OAuthError
from mcsync.mailchimp.models import OAuthMetadata

__all__ = ["OAuthError", "authorize_url", "exchange_code", "fetch_metadata"]


def authorize_url(login_url: str, *, client_id: str, redirect_uri: str, state: str) -> str:
    """Where to send the user's browser to grant access."""
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "state": state,
        }
    )
    return f"{login_url.rstrip('/')}/oauth2/authorize?{query}"


@asynccontextmanager
async def _client(http: httpx.AsyncClient | None) -> AsyncIterator[httpx.AsyncClient]:
    if http is not None:
        yield http
        return
    own = make_http_client(30.0)
    try:
        yield own
    finally:
        await own.aclose()


def _describe_failure(response: httpx.Response) -> str:
    """A calm, secret-free description of a failed OAuth answer."""
    message = ""
    try:
        data = json.loads(response.content) if response.content else None
    except ValueError:
        data = None
    if isinstance(data, dict):
        for key in ("error_description", "detail", "error", "title", "message"):
            value = data.get(key)
            if isinstance(value, str) and value:
                message = value
                break
    return (
        f"Mailchimp refused the request ({response.status_code}{': ' + message if message else ''})"
    )


async def _send(
    op: str,
    http: httpx.AsyncClient | None,
    method: str,
    login_url: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    data: dict[str, str] | None = None,
) -> httpx.Response:
    """One call to Mailchimp's login server (`{login_url}/oauth2/{path}`), logged once; a
    failure of any kind is an OAuthError with a calm, secret-free message."""
    url = f"{login_url.rstrip('/')}/oauth2/{path}"
    headers = {"Accept": "application/json", **(headers or {})}
    started = time.perf_counter()
    status: int | None = None
    outcome = "ok"
    failure: OAuthError | None = None
    try:
        async with _client(http) as client:
            try:
                response = await client.request(method, url, headers=headers, data=data)
            except httpx.TimeoutException:
                outcome = "OAuthError"
                raise OAuthError("Mailchimp's login server timed out; please try again") from None
            except httpx.TransportError:
                outcome = "OAuthError"
                raise OAuthError(
                    "Could not reach Mailchimp's login server; please try again"
                ) from None
        status = response.status_code
        if response.status_code >= 400:
            outcome = "OAuthError"
            raise OAuthError(_describe_failure(response), status=response.status_code)
        return response
    except OAuthError as exc:
        failure = exc
        raise
    finally:
        log_call(op, method, status=status, outcome=outcome, started=started, error=failure)


async def exchange_code(
    login_url: str,
    *,
    client_id: str,
    client_secret: str,
    redirect_uri: str,
    code: str,
    http: httpx.AsyncClient | None = None,
) -> str:
    """Trade the callback's code for an access token (form-encoded POST /oauth2/token)."""
    form = {
        "grant_type": "authorization_code",
        "client_id": client_id,
        "client_secret": client_secret,
        "redirect_uri": redirect_uri,
        "code": code,
    }
    response = await _send("oauth_exchange_code", http, "POST", login_url, "token", data=form)
    try:
        data = response.json()
    except ValueError:
        raise OAuthError(
            "Mailchimp's token answer was not JSON", status=response.status_code
        ) from None
    token = data.get("access_token") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token:
        raise OAuthError(
            "Mailchimp's token answer had no access token", status=response.status_code
        )
    return token


async def fetch_metadata(
    login_url: str, token: str, *, http: httpx.AsyncClient | None = None
) -> OAuthMetadata:
    """GET /oauth2/metadata with ``Authorization: OAuth <token>``: the account's dc and names."""
    auth = {"Authorization": f"OAuth {token}"}
    response = await _send("oauth_metadata", http, "GET", login_url, "metadata", headers=auth)
    try:
        return OAuthMetadata.model_validate(response.json())
    except (ValueError, ValidationError):
        raise OAuthError(
            "Mailchimp's metadata answer was not understood", status=response.status_code
        ) from None
