"""The operator's page: `GET /admin` (plain HTML + JS) and its JSON under `/admin/api/`.

For the app's staff only: the caller's JWT is verified exactly as the widget's
(`mcsync.web.context.verified_claims`, 401 when it is not valid), then the operator rule
(`mcsync.web.operators`, deny by default) must allow it, else 403. Unlike the widget's API, the
routes name a user in the path: that is what an operator is for. Every action is logged
(`admin_action`, with `operator_id`) and written to the connection's health history with the
operator's id. Nothing secret leaves: no token or ciphertext, free text redacted and
addresses masked (`mcsync.admin_store.shown`)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import psycopg
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from mcsync import admin_store
from mcsync.connections import disconnect_user, get_connection
from mcsync.logging import get_logger
from mcsync.mailchimp.errors import ConnectionLevelError, MailchimpError
from mcsync.reconcile import ReconcileError, audit, cancel_run, start_operator_run
from mcsync.web.context import WebContext, ctx_of, verified_claims
from mcsync.web.operators import OperatorRule
from mcsync.web.runs import spawn_run

log = get_logger("mcsync.web.admin")
router = APIRouter()

MAX_DIFFERENCES_SHOWN = 500
# The page is same-origin, script from our own /static only, never framed, no referrer.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def operator_rule(request: Request) -> OperatorRule:
    rule: OperatorRule = request.app.state.mcsync_operators
    return rule


def current_operator(request: Request) -> UUID:
    """FastAPI dependency: the operator's user id; 401 without a valid token, 403 if the
    token's holder is not an operator (the rule is deny-by-default)."""
    verified = verified_claims(request)  # exactly as the widget's: key, claims, expiry, `sub`
    user_id = verified.user_id
    if not operator_rule(request).allows(user_id, dict(verified.claims)):
        log.warning("admin_denied", user_id=str(user_id), path=request.url.path)
        raise HTTPException(403, "This page is for the app's operators.")
    return user_id


Operator = Annotated[UUID, Depends(current_operator)]


def _act(operator: UUID, action: str, user_id: UUID, **fields: Any) -> None:
    log.info(
        "admin_action", operator_id=str(operator), action=action, user_id=str(user_id), **fields
    )


async def _record(
    ctx: WebContext, operator: UUID, user_id: UUID, kind: str, detail: str | None = None
) -> None:
    await ctx.db(admin_store.record_health_event, user_id, kind, actor=str(operator), detail=detail)


@router.get("/admin", include_in_schema=False)
async def page() -> FileResponse:
    """The page itself asks for the token; the HTML holds no data."""
    from mcsync.web.app import STATIC_DIR

    return FileResponse(STATIC_DIR / "admin.html", headers=PAGE_HEADERS)


@router.get("/admin/api/overview")
async def overview_page(
    request: Request,
    operator: Operator,
    state: Annotated[str | None, Query()] = None,
    search: Annotated[str, Query(max_length=200)] = "",
    sort: Annotated[str, Query()] = "backlog",
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=admin_store.PAGE_SIZE_MAX)] = 50,
) -> dict[str, Any]:
    try:
        query = admin_store.OverviewQuery(state or None, search, sort, page, page_size)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return await ctx_of(request).db(admin_store.overview, query)


@router.get("/admin/api/users/{user_id}")
async def one_user(request: Request, operator: Operator, user_id: UUID) -> dict[str, Any]:
    found = await ctx_of(request).db(admin_store.user_detail, user_id)
    if found is None:
        raise HTTPException(404, "No Mailchimp connection for this user.")
    return found


def _connection_or_404(conn: psycopg.Connection[Any], user_id: UUID) -> Any:
    found = get_connection(conn, user_id)
    if found is None:
        raise HTTPException(404, "No Mailchimp connection for this user.")
    return found


@router.post("/admin/api/users/{user_id}/verify")
async def verify(request: Request, operator: Operator, user_id: UUID) -> dict[str, Any]:
    """The drift audit (`mcsync verify`): reads the audience, changes nothing."""
    ctx = ctx_of(request)
    await ctx.db(_connection_or_404, user_id)
    try:
        diffs = await audit(ctx.database, ctx.settings, ctx.cipher, user_id, http=ctx.http)
    except ReconcileError as exc:
        raise HTTPException(409, f"Cannot audit: {exc}.") from None
    except ConnectionLevelError as exc:
        _act(operator, "verify", user_id, outcome="connection_error")
        raise HTTPException(
            409, f"Mailchimp refused the token: {admin_store.shown(str(exc))}"
        ) from None
    except MailchimpError as exc:
        _act(operator, "verify", user_id, outcome="unavailable")
        raise HTTPException(
            502, f"Mailchimp did not answer: {admin_store.shown(str(exc))}"
        ) from None
    _act(
        operator,
        "verify",
        user_id,
        outcome="in_sync" if not diffs else "drift",
        differences=len(diffs),
    )
    await _record(ctx, operator, user_id, "verified", f"{len(diffs)} difference(s)")
    return {
        "user_id": str(user_id),
        "in_sync": not diffs,
        "count": len(diffs),
        "differences": [
            {
                "kind": d.kind,
                "email": admin_store.mask_email(d.email),
                "detail": admin_store.shown(d.detail),
                "contact_ids": [str(c) for c in d.contact_ids],
            }
            for d in diffs[:MAX_DIFFERENCES_SHOWN]
        ],
    }


@router.post("/admin/api/users/{user_id}/resume")
async def resume(request: Request, operator: Operator, user_id: UUID) -> dict[str, Any]:
    """Probe now: one cheap call (the worker's probe); if Mailchimp answers, resume."""
    ctx = ctx_of(request)
    found = await ctx.db(_connection_or_404, user_id)
    if not found.audience_id:
        raise HTTPException(409, "No audience chosen yet: nothing to resume.")
    client = ctx.client_for(found)
    try:
        await client.get_audience(found.audience_id)
    except MailchimpError as exc:
        error = admin_store.shown(str(exc))
        _act(operator, "resume", user_id, outcome="still_down")
        await _record(ctx, operator, user_id, "probe_failed", error)
        status = 409 if isinstance(exc, ConnectionLevelError) else 502
        raise HTTPException(status, f"Mailchimp still refuses: {error}") from None
    finally:
        await client.aclose()
    await ctx.db(admin_store.resume, user_id)
    await _record(ctx, operator, user_id, "resumed", f"was {found.sync_status}")
    _act(operator, "resume", user_id, outcome="active", was=found.sync_status)
    return {"sync_status": "active", "detail": "Mailchimp answered; syncing resumed."}


@router.post("/admin/api/users/{user_id}/sync-now", status_code=202)
async def sync_now(request: Request, operator: Operator, user_id: UUID) -> dict[str, Any]:
    ctx = ctx_of(request)
    await ctx.db(_connection_or_404, user_id)
    try:
        started = await ctx.db(start_operator_run, user_id)
    except ReconcileError as exc:
        raise HTTPException(409, f"Sync Now needs a connected audience ({exc}).") from None
    spawn_run(ctx, user_id)
    _act(operator, "sync_now", user_id, outcome="started" if started else "resumed")
    await _record(ctx, operator, user_id, "sync_now", None if started else "resumed a run")
    return {"detail": "Sync Now started." if started else "Sync Now was running; resumed it."}


@router.post("/admin/api/users/{user_id}/retry-rejected")
async def retry_rejected(request: Request, operator: Operator, user_id: UUID) -> dict[str, Any]:
    ctx = ctx_of(request)
    await ctx.db(_connection_or_404, user_id)
    queued = await ctx.db(admin_store.retry_rejected, user_id)
    _act(operator, "retry_rejected", user_id, queued=queued)
    await _record(ctx, operator, user_id, "retry_rejected", f"{queued} contact(s) queued")
    return {"queued": queued}


class Confirmation(BaseModel):
    confirm: str = Field(min_length=1, max_length=64)


def _disconnect(conn: psycopg.Connection[Any], user_id: UUID) -> bool:
    removed = disconnect_user(conn, user_id)
    cancel_run(conn, user_id, "disconnected by an operator")
    return removed


@router.post("/admin/api/users/{user_id}/disconnect")
async def disconnect(
    body: Confirmation, request: Request, operator: Operator, user_id: UUID
) -> dict[str, Any]:
    """Like the user's own Disconnect (Mailchimp untouched); `confirm` must repeat the id."""
    if body.confirm.strip().lower() != str(user_id):
        raise HTTPException(422, "To disconnect, confirm with the user's id.")
    ctx = ctx_of(request)
    removed = await ctx.db(_disconnect, user_id)
    _act(operator, "disconnect", user_id, had_connection=removed)
    await _record(ctx, operator, user_id, "disconnected")
    return {"disconnected": removed}
