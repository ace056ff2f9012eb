"""Sync Now runs in the web process: one background task per user, plus a sweeper that takes
over runs whose process died (their lease expired) so an interrupted run always finishes.
Both borrow the web process's one pool (`WebContext.database`), a connection per step."""

from __future__ import annotations

import asyncio
import contextlib
from uuid import UUID

from mcsync.logging import get_logger
from mcsync.reconcile import run_reconciliation, stale_runs
from mcsync.web.context import WebContext

log = get_logger("mcsync.web")


async def _run(ctx: WebContext, user_id: UUID) -> None:
    try:
        await run_reconciliation(
            ctx.database, ctx.settings, ctx.cipher, user_id, owner=ctx.owner, http=ctx.http
        )
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a run must never take the web process down; the sweeper retries
        log.error(
            "reconcile_failed", user_id=str(user_id), error=str(exc), error_type=type(exc).__name__
        )
    finally:
        ctx.running.discard(user_id)


def spawn_run(ctx: WebContext, user_id: UUID) -> None:
    if user_id in ctx.running:
        return
    ctx.running.add(user_id)
    task = asyncio.get_running_loop().create_task(_run(ctx, user_id))
    ctx.tasks.add(task)
    task.add_done_callback(ctx.tasks.discard)


async def sweep(ctx: WebContext) -> None:
    """Forever: resume unfinished runs nobody holds."""
    while True:
        try:
            for user_id in await stale_runs(ctx.database):
                spawn_run(ctx, user_id)
        except Exception as exc:  # the database may blink; try again next round
            log.warning("reconcile_sweep_failed", error=str(exc))
        await asyncio.sleep(ctx.sweep_interval)


async def stop_all(ctx: WebContext) -> None:
    for task in list(ctx.tasks):
        task.cancel()
    for task in list(ctx.tasks):
        with contextlib.suppress(BaseException):
            await task
