"""The JSON API behind the widget. Every route is the signed-in user's own; nothing takes a
user id from the request, so one user can never name another's connection."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from mcsync import reconcile_store
from mcsync.connections import (
    AudienceChangeLimited,
    disconnect_user,
    get_connection,
    pending_count,
    select_audience,
)
from mcsync.logging import get_logger
from mcsync.mailchimp.errors import ConnectionLevelError, MailchimpError
from mcsync.mailchimp.models import Audience
from mcsync.reconcile import ReconcileError, cancel_run, request_sync_now
from mcsync.web.context import CurrentUser, WebContext, connection_or_409, ctx_of
from mcsync.web.runs import spawn_run

log = get_logger("mcsync.web")
router = APIRouter(prefix="/api")

RECONNECT = "Mailchimp no longer accepts mcsync's access. Please disconnect and connect again."
UNAVAILABLE = "Mailchimp didn't answer just now. Please try again in a minute."


def _try_again_later(detail: str, wait: int) -> JSONResponse:
    """A 429 saying when to try again: `detail` with its `{minutes}` filled in ("about 1
    minute", "about 7 minutes"; rounded up, never 0), `retry_after` and `Retry-After` in
    seconds."""
    minutes = max(1, math.ceil(wait / 60))
    spelled = f"{minutes} minute{'s' if minutes != 1 else ''}"
    return JSONResponse(
        {"detail": detail.format(minutes=spelled), "retry_after": wait},
        status_code=429,
        headers={"Retry-After": str(wait)},
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def read_status(conn: psycopg.Connection[Any], user_id: UUID, interval: float) -> dict[str, Any]:
    """What the settings panel and the coach panel show. Never the token."""
    found = get_connection(conn, user_id)
    if found is None:
        return {"connected": False, "sync_status": None, "notice": None}
    pending = pending_count(conn, user_id)
    running = bool(reconcile_store.run_unfinished(conn, user_id))
    available_in = reconcile_store.sync_now_available_in(conn, user_id, interval)
    return {
        "connected": True,
        "account_name": found.account_name,
        "audience_id": found.audience_id,
        "audience_name": found.audience_name,
        "needs_audience": found.audience_id is None,
        "sync_status": found.sync_status,
        "notice": found.notice,
        "connected_at": _iso(found.connected_at),
        "last_synced_at": _iso(found.last_sync_at),
        "last_full_sync_at": _iso(found.last_full_sync_at),
        "pending": pending,
        "sync_now": {"running": running, "available_in": available_in},
    }


@router.get("/status")
async def status(request: Request, user: CurrentUser) -> dict[str, Any]:
    ctx = ctx_of(request)
    return await ctx.db(read_status, user, ctx.sync_now_interval)


async def _audiences(ctx: WebContext, user: UUID) -> tuple[Any, list[Audience]]:
    found = await ctx.db(connection_or_409, user)
    client = ctx.client_for(found)
    try:
        return found, await client.list_audiences()
    except ConnectionLevelError:
        raise HTTPException(409, RECONNECT) from None
    except MailchimpError as exc:
        log.warning("audiences_unavailable", user_id=str(user), error=str(exc))
        raise HTTPException(502, UNAVAILABLE) from None
    finally:
        await client.aclose()


@router.get("/audiences")
async def audiences(request: Request, user: CurrentUser) -> dict[str, Any]:
    found, listed = await _audiences(ctx_of(request), user)
    return {
        "audiences": [
            {
                "id": a.id,
                "name": a.name,
                "member_count": a.member_count,
                "double_optin": a.double_optin,
                "selected": a.id == found.audience_id,
            }
            for a in listed
        ]
    }


class AudienceChoice(BaseModel):
    audience_id: str = Field(min_length=1, max_length=100)


@router.put("/audience")
async def choose_audience(
    choice: AudienceChoice, request: Request, user: CurrentUser
) -> Any:
    """First choice or a change. A change starts a full sync into the new audience and leaves
    the old one as it is."""
    ctx = ctx_of(request)
    _, listed = await _audiences(ctx, user)
    chosen = next((a for a in listed if a.id == choice.audience_id), None)
    if chosen is None:
        raise HTTPException(404, "That audience is not in your Mailchimp account.")
    try:
        queued = await ctx.db(
            select_audience,
            user_id=user,
            audience_id=chosen.id,
            audience_name=chosen.name,
            double_optin=chosen.double_optin,
        )
    except AudienceChangeLimited as exc:
        return _try_again_later(
            "The audience was changed several times in the last hour. You can change it again "
            "in about {minutes}.",
            exc.wait,
        )
    log.info("audience_selected", user_id=str(user), audience_id=chosen.id, queued=queued)
    spawn_run(ctx, user)  # back to an audience used before: its check against the audience
    return await ctx.db(read_status, user, ctx.sync_now_interval)


@router.post("/sync-now", status_code=202)
async def sync_now(request: Request, user: CurrentUser) -> Any:
    ctx = ctx_of(request)
    try:
        wait = await ctx.db(request_sync_now, user, min_interval=ctx.sync_now_interval)
    except ReconcileError as exc:
        raise HTTPException(409, f"Sync Now needs a connected audience ({exc}).") from None
    if wait:
        return _try_again_later(
            "Sync Now already ran in the last hour. You can run it again in about {minutes}; "
            "contacts keep syncing automatically meanwhile.",
            wait,
        )
    spawn_run(ctx, user)
    log.info("sync_now_started", user_id=str(user))
    return {"detail": "Sync started. Changes will show up in Mailchimp shortly."}


def _disconnect(conn: psycopg.Connection[Any], user_id: UUID) -> bool:
    removed = disconnect_user(conn, user_id)
    cancel_run(conn, user_id, "disconnected")
    return removed


@router.delete("/connection")
async def disconnect(request: Request, user: CurrentUser) -> dict[str, Any]:
    """Credentials and pending events go; Mailchimp and the app's contacts stay as they are."""
    removed = await ctx_of(request).db(_disconnect, user)
    log.info("disconnected", user_id=str(user), had_connection=removed)
    return {"connected": False, "disconnected": removed}
