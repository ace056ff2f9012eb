"""The OAuth popup flow: start (JWT) -> begin (the popup, sets a cookie) -> Mailchimp ->
callback.

The callback carries no JWT (it is a top-level navigation from Mailchimp); the signed,
expiring, single-use `state` is what ties it to the user who pressed Connect, and a cookie set
by `POST /oauth/begin` ties it to the browser that pressed it. Without that cookie, an attacker
could start a flow for their own account and get a victim to consent with the attacker's state,
filing the victim's Mailchimp token under the attacker's user (login CSRF).

`begin` is a form POST from the widget into the popup, not a GET link, and it only answers a
request whose `Origin` is the app (or mcsync itself): a link or a form on any other site cannot
plant the cookie in a victim's browser, which a GET `begin` taking any valid state would allow.

Every way it can fail ends on a calm page that stores nothing and tells the opener window what
happened."""

from __future__ import annotations

import html
import json
import math
import secrets
import time
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import UUID

import psycopg
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from mcsync.connections import connect_user, get_connection, spend_oauth_state
from mcsync.logging import get_logger
from mcsync.mailchimp.client import ClientFactory
from mcsync.mailchimp.endpoints import InvalidDataCenter, checked_dc
from mcsync.mailchimp.errors import MailchimpError, OAuthError
from mcsync.mailchimp.models import Audience
from mcsync.mailchimp.oauth import authorize_url, exchange_code, fetch_metadata
from mcsync.web.auth import AuthError, OAuthState
from mcsync.web.context import CurrentUser, WebContext, ctx_of
from mcsync.web.runs import spawn_run

log = get_logger("mcsync.web")
router = APIRouter()

EXPIRED = (
    "This connection link has expired or was already used. Close this window and press "
    "Connect again."
)
FAILED = "Mailchimp couldn't complete the connection, so nothing was saved. Please try again."
DENIED = "Mailchimp access was not granted, so nothing was saved."
OTHER_BROWSER = (
    "This Mailchimp window wasn't opened from the app in this browser, so nothing was saved. "
    "Close this window and press Connect again in the app."
)
NOT_FROM_APP = (
    "This connection wasn't started from the app, so nothing was saved. Close this window and "
    "press Connect again in the app."
)
COOKIE = "mcsync_oauth"
# Over https the cookie is `__Host-` prefixed: browsers then only accept it Secure, with Path=/
# and no Domain, so no sibling subdomain (or a plain-http page on the same host) can plant or
# overwrite a binding. Plain http (local development) cannot use the prefix.
SECURE_COOKIE = f"__Host-{COOKIE}"
RESULT_PAGE = Template(
    (Path(__file__).resolve().parent / "templates" / "oauth_result.html").read_text()
)


def cookie_name(secure: bool) -> str:
    """The binding cookie's name: `__Host-mcsync_oauth` over https, `mcsync_oauth` over http."""
    return SECURE_COOKIE if secure else COOKIE


def _configured(ctx: WebContext) -> bool:
    s = ctx.settings
    return bool(s.mailchimp_client_id and s.mailchimp_client_secret and s.mailchimp_redirect_uri)


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def _begin_url(request: Request, ctx: WebContext) -> str:
    """`/oauth/begin` next to the registered callback (mcsync's public address, even behind
    a proxy), else on the address this request came to."""
    public = _origin_of(ctx.settings.mailchimp_redirect_uri)
    if public:
        return f"{public}{_cookie_path(ctx).rstrip('/')}/begin"
    return str(request.url_for("begin"))


def _cookie_path(ctx: WebContext) -> str:
    """The folder of the callback (`/oauth` for `/oauth/callback`): begin and callback only."""
    path = urlsplit(ctx.settings.mailchimp_redirect_uri).path
    folder = path.rsplit("/", 1)[0] if "/" in path else ""
    return folder or "/"


def _served_securely(request: Request, ctx: WebContext) -> bool:
    return request.url.scheme == "https" or ctx.settings.mailchimp_redirect_uri.startswith("https:")


def _set_binding(
    response: Response, request: Request, ctx: WebContext, value: str, age: int
) -> None:
    """HttpOnly, SameSite=Lax (sent on Mailchimp's top-level redirect back). Over https:
    `__Host-` prefixed, Secure, Path=/ (the prefix requires it), no Domain. Over http: Path =
    begin and callback's folder."""
    secure = _served_securely(request, ctx)
    response.set_cookie(
        cookie_name(secure),
        value,
        max_age=age,
        path="/" if secure else _cookie_path(ctx),
        secure=secure,
        httponly=True,
        samesite="lax",
    )


@router.post("/api/oauth/start")
async def start(request: Request, user: CurrentUser) -> dict[str, str]:
    """A signed state for this user, and where the popup takes it: `POST begin_url` with a
    form field `state`, sent from the app's page (the widget does this)."""
    ctx = ctx_of(request)
    if not _configured(ctx):
        raise HTTPException(503, "Mailchimp connection is not set up on this server yet.")
    # The popup reports back to the page that opened it, if that page is an allowed origin.
    origin = request.headers.get("origin", "")
    if origin not in ctx.app_origins:
        origin = ctx.app_origins[0] if ctx.app_origins else ""
    return {
        "begin_url": _begin_url(request, ctx),
        "state": ctx.signer.make_state(user, origin=origin),
    }


@router.post("/oauth/begin", response_class=HTMLResponse, name="begin")
async def begin(request: Request) -> Response:
    """The popup's first stop: bind the state to this browser with a cookie, then go on to
    Mailchimp's consent screen."""
    ctx = ctx_of(request)
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    raw = (form.get("state") or [""])[0]
    try:
        state = ctx.signer.read_state(raw)
    except AuthError as exc:
        log.warning("oauth_begin_refused", reason=str(exc))
        return _page("", ok=False, message=EXPIRED, status=400)
    # Only the app's own page (or mcsync's) may begin a flow in a browser: a link or a form on
    # another site sends its own Origin (or none), so it cannot plant an attacker's state here.
    allowed = {*ctx.app_origins, _origin_of(ctx.settings.mailchimp_redirect_uri)} - {""}
    sent = request.headers.get("origin", "")
    if sent not in allowed:
        log.warning("oauth_begin_foreign_origin", user_id=str(state.user_id), origin=sent)
        return _page(state.origin, ok=False, message=NOT_FROM_APP, status=403)
    if not _configured(ctx):
        raise HTTPException(503, "Mailchimp connection is not set up on this server yet.")
    s = ctx.settings
    url = authorize_url(
        s.mailchimp_login_url,
        client_id=s.mailchimp_client_id,
        redirect_uri=s.mailchimp_redirect_uri,
        state=raw,
    )
    response = RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})
    remaining = math.ceil(state.expires_at.timestamp() - time.time())
    _set_binding(response, request, ctx, ctx.signer.browser_binding(state), max(1, remaining))
    return response


def _spend(conn: psycopg.Connection[Any], state: OAuthState) -> bool:
    """True the first time a state is presented, False on every replay."""
    return spend_oauth_state(conn, state.nonce, state.user_id, state.expires_at)


def _page(origin: str, *, ok: bool, message: str, status: int, **extra: Any) -> HTMLResponse:
    """A tiny page that tells the opener (only at the app's origin) and closes itself."""
    nonce = secrets.token_urlsafe(16)
    payload = {"source": "mcsync", "type": "oauth-result", "ok": ok, "message": message, **extra}
    # `<` escaped so no value can close the script element early.
    body = RESULT_PAGE.substitute(
        heading="Connected" if ok else "Not connected",
        message=html.escape(message),
        nonce=nonce,
        data=json.dumps(payload).replace("<", "\\u003c"),
        origin=json.dumps(origin).replace("<", "\\u003c"),
    )
    return HTMLResponse(
        body,
        status_code=status,
        headers={
            "Content-Security-Policy": f"default-src 'none'; style-src 'unsafe-inline'; "
            f"script-src 'nonce-{nonce}'; base-uri 'none'; form-action 'none'",
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
        },
    )


def _choose(audiences: list[Audience], previous: str | None) -> Audience | None:
    """Keep the audience the user had if it is still there; else the only one, if one."""
    for audience in audiences:
        if audience.id == previous:
            return audience
    return audiences[0] if len(audiences) == 1 else None


class _Refused(Exception):
    """A callback step said no: `page` is the answer (nothing was stored)."""

    def __init__(self, page: HTMLResponse) -> None:
        super().__init__("oauth callback refused")
        self.page = page


@router.get("/oauth/callback", response_class=HTMLResponse)
async def callback(request: Request) -> HTMLResponse:
    """Mailchimp sends the popup here: check the state and this browser's binding, trade the
    code for a token, store the connection, and tell the opener."""
    ctx = ctx_of(request)
    try:
        state = await _spent_state(request, ctx)
        code = _granted_code(request, state)
        token, dc, account_name = await _exchange(ctx, state, code)
        audiences = await _audiences(ctx, state.user_id, dc, token)
        response = await _store(ctx, state, token, dc, account_name, audiences)
    except _Refused as refused:
        response = refused.page
    _clear_binding(response, request, ctx)
    return response


async def _spent_state(request: Request, ctx: WebContext) -> OAuthState:
    """The callback's state, if genuine, presented for the first time, and bound to this
    browser. Spent before the browser check, so a state seen in the wrong browser can't be
    tried again."""
    try:
        state = ctx.signer.read_state(request.query_params.get("state", ""))
    except AuthError as exc:
        log.warning("oauth_state_refused", reason=str(exc))
        raise _Refused(_page("", ok=False, message=EXPIRED, status=400)) from exc
    if not await ctx.db(_spend, state):
        log.warning("oauth_state_replayed", user_id=str(state.user_id))
        raise _Refused(_page(state.origin, ok=False, message=EXPIRED, status=400))
    name = cookie_name(_served_securely(request, ctx))
    if not ctx.signer.bound(state, request.cookies.get(name)):
        log.warning(
            "oauth_browser_mismatch",
            user_id=str(state.user_id),
            binding="missing" if name not in request.cookies else "different",
        )
        raise _Refused(_page(state.origin, ok=False, message=OTHER_BROWSER, status=400))
    return state


def _granted_code(request: Request, state: OAuthState) -> str:
    """The authorization code, unless the user said no at Mailchimp."""
    q = request.query_params
    code = q.get("code")
    if q.get("error") or not code:
        log.info("oauth_denied", user_id=str(state.user_id), error=q.get("error", "no code"))
        raise _Refused(_page(state.origin, ok=False, message=DENIED, status=400))
    return code


async def _exchange(ctx: WebContext, state: OAuthState, code: str) -> tuple[str, str, str | None]:
    """The token, the account's data center (checked: it becomes the API host) and name. The
    metadata's `api_endpoint` is not trusted for anything; the base is built from the dc."""
    s = ctx.settings
    try:
        token = await exchange_code(
            s.mailchimp_login_url,
            client_id=s.mailchimp_client_id,
            client_secret=s.mailchimp_client_secret,
            redirect_uri=s.mailchimp_redirect_uri,
            code=code,
            http=ctx.http,
        )
        meta = await fetch_metadata(s.mailchimp_login_url, token, http=ctx.http)
        dc = checked_dc(meta.dc)
    except (OAuthError, InvalidDataCenter) as exc:
        log.warning("oauth_failed", user_id=str(state.user_id), error=str(exc))
        raise _Refused(_page(state.origin, ok=False, message=FAILED, status=502)) from exc
    return token, dc, meta.accountname


async def _audiences(ctx: WebContext, user: UUID, dc: str, token: str) -> list[Audience]:
    """The account's audiences; none if Mailchimp can't list them now (the token is good, and
    the picker can list them later)."""
    client = ClientFactory.from_settings(ctx.settings, ctx.http).client(
        dc, token, log_context={"user_id": str(user)}
    )
    try:
        return await client.list_audiences()
    except MailchimpError as exc:
        log.warning("oauth_audiences_unavailable", user_id=str(user), error=str(exc))
        return []
    finally:
        await client.aclose()


async def _store(
    ctx: WebContext,
    state: OAuthState,
    token: str,
    dc: str,
    account_name: str | None,
    audiences: list[Audience],
) -> HTMLResponse:
    """Store the connection (with the audience it keeps or the only one) and say so."""
    user = state.user_id
    previous = await ctx.db(get_connection, user)
    chosen = _choose(audiences, previous.audience_id if previous else None)
    queued = await ctx.db(
        connect_user,
        ctx.cipher,
        user_id=user,
        access_token=token,
        dc=dc,
        api_endpoint=ctx.settings.api_base(dc),
        account_name=account_name,
        audience_id=chosen.id if chosen else None,
        audience_name=chosen.name if chosen else None,
        double_optin=chosen.double_optin if chosen else False,
    )
    log.info(
        "oauth_connected",
        user_id=str(user),
        dc=dc,
        audience_id=chosen.id if chosen else None,
        audiences=len(audiences),
        queued=queued,
    )
    if chosen:
        spawn_run(ctx, user)  # a reconnect's check against the audience itself, if one started
        message = f'Connected to "{chosen.name}". You can close this window.'
    else:
        message = "Connected to Mailchimp. Choose an audience in the app to start syncing."
    return _page(
        state.origin,
        ok=True,
        message=message,
        status=200,
        audience_name=chosen.name if chosen else None,
        needs_audience=chosen is None,
    )


def _clear_binding(response: Response, request: Request, ctx: WebContext) -> None:
    """The binding is spent with its state, whatever happened: clear it. A cookie that is not
    this state's binding is left alone (it may be another flow's; a stray request to the
    callback must not be able to break it)."""
    try:
        state = ctx.signer.read_state(request.query_params.get("state", ""))
    except AuthError:
        return
    if ctx.signer.bound(state, request.cookies.get(cookie_name(_served_securely(request, ctx)))):
        _set_binding(response, request, ctx, "", 0)
