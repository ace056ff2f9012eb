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
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from mcsync import queries
from mcsync.connections import connect_user, get_connection
from mcsync.logging import get_logger
from mcsync.mailchimp.client import MailchimpClient
from mcsync.mailchimp.errors import MailchimpError, OAuthError
from mcsync.mailchimp.models import Audience
from mcsync.mailchimp.oauth import authorize_url, exchange_code, fetch_metadata
from mcsync.web.auth import AuthError, OAuthState
from mcsync.web.context import CurrentUser, WebContext, ctx_of

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


def _set_binding(
    response: Response, request: Request, ctx: WebContext, value: str, age: int
) -> None:
    """HttpOnly, SameSite=Lax (sent on Mailchimp's top-level redirect back), Path = begin and
    callback's folder, Secure whenever mcsync is reached over https."""
    redirect = ctx.settings.mailchimp_redirect_uri
    secure = request.url.scheme == "https" or redirect.startswith("https:")
    response.set_cookie(
        COOKIE,
        value,
        max_age=age,
        path=_cookie_path(ctx),
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
    with conn.transaction():
        conn.execute(queries.PRUNE_OAUTH_STATES)
        cur = conn.execute(
            queries.CONSUME_OAUTH_STATE,
            {"nonce": state.nonce, "user_id": state.user_id, "expires_at": state.expires_at},
        )
        return cur.rowcount == 1


def _page(origin: str, *, ok: bool, message: str, status: int, **extra: Any) -> HTMLResponse:
    """A tiny page that tells the opener (only at the app's origin) and closes itself."""
    nonce = secrets.token_urlsafe(16)
    payload = {"source": "mcsync", "type": "oauth-result", "ok": ok, "message": message, **extra}
    # `<` escaped so no value can close the script element early.
    data = json.dumps(payload).replace("<", "\\u003c")
    target = json.dumps(origin).replace("<", "\\u003c")
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Mailchimp</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font:16px/1.5 system-ui,sans-serif;margin:2rem;color:#1f2937}}</style></head>
<body><main><h1>{"Connected" if ok else "Not connected"}</h1>
<p role="status">{html.escape(message)}</p>
<p><button type="button" id="close">Close this window</button></p></main>
<script nonce="{nonce}">
(function () {{
  var data = {data}, origin = {target};
  if (window.opener && origin) {{
    try {{ window.opener.postMessage(data, origin); }} catch (e) {{}}
  }}
  document.getElementById("close").addEventListener("click", function () {{ window.close(); }});
  if (data.ok) {{ setTimeout(function () {{ window.close(); }}, 600); }}
}})();
</script></body></html>"""
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


@router.get("/oauth/callback", response_class=HTMLResponse)
async def callback(request: Request) -> HTMLResponse:
    ctx = ctx_of(request)
    response = await _callback(request, ctx)
    # The binding is spent with its state, whatever happened: clear it. A cookie that is not
    # this state's binding is left alone (it may be another flow's; a stray request to the
    # callback must not be able to break it).
    try:
        state = ctx.signer.read_state(request.query_params.get("state", ""))
    except AuthError:
        return response
    if ctx.signer.bound(state, request.cookies.get(COOKIE)):
        _set_binding(response, request, ctx, "", 0)
    return response


async def _callback(request: Request, ctx: WebContext) -> HTMLResponse:
    q = request.query_params
    try:
        state = ctx.signer.read_state(q.get("state", ""))
    except AuthError as exc:
        log.warning("oauth_state_refused", reason=str(exc))
        return _page("", ok=False, message=EXPIRED, status=400)
    if not await ctx.db(_spend, state):
        log.warning("oauth_state_replayed", user_id=str(state.user_id))
        return _page(state.origin, ok=False, message=EXPIRED, status=400)
    # Spent above either way, so a state seen in the wrong browser can't be tried again.
    if not ctx.signer.bound(state, request.cookies.get(COOKIE)):
        log.warning(
            "oauth_browser_mismatch",
            user_id=str(state.user_id),
            cookie="missing" if COOKIE not in request.cookies else "different",
        )
        return _page(state.origin, ok=False, message=OTHER_BROWSER, status=400)
    user = state.user_id
    if q.get("error") or not q.get("code"):
        log.info("oauth_denied", user_id=str(user), error=q.get("error", "no code"))
        return _page(state.origin, ok=False, message=DENIED, status=400)

    s = ctx.settings
    try:
        token = await exchange_code(
            s.mailchimp_login_url,
            client_id=s.mailchimp_client_id,
            client_secret=s.mailchimp_client_secret,
            redirect_uri=s.mailchimp_redirect_uri,
            code=q["code"],
            http=ctx.http,
        )
        meta = await fetch_metadata(s.mailchimp_login_url, token, http=ctx.http)
    except OAuthError as exc:
        log.warning("oauth_failed", user_id=str(user), error=str(exc))
        return _page(state.origin, ok=False, message=FAILED, status=502)

    audiences: list[Audience] = []
    client = MailchimpClient(
        s.api_base(meta.dc), token, http=ctx.http, timeout=s.mcsync_http_timeout
    )
    try:
        audiences = await client.list_audiences()
    except MailchimpError as exc:
        # The token is good; the picker can list audiences later.
        log.warning("oauth_audiences_unavailable", user_id=str(user), error=str(exc))
    finally:
        await client.aclose()

    previous = await ctx.db(get_connection, user)
    chosen = _choose(audiences, previous.audience_id if previous else None)
    queued = await ctx.db(
        connect_user,
        ctx.cipher,
        user_id=user,
        access_token=token,
        dc=meta.dc,
        api_endpoint=meta.api_endpoint,
        account_name=meta.accountname,
        audience_id=chosen.id if chosen else None,
        audience_name=chosen.name if chosen else None,
        double_optin=chosen.double_optin if chosen else False,
    )
    log.info(
        "oauth_connected",
        user_id=str(user),
        dc=meta.dc,
        audience_id=chosen.id if chosen else None,
        audiences=len(audiences),
        queued=queued,
    )
    if chosen:
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
