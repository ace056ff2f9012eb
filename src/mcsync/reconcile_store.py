"""Reconciliation's Postgres side: every statement Sync Now, `mcsync sync-now` and `mcsync
verify` run, each a named one of `mcsync.queries`. What the rows mean is `mcsync.reconcile`.

Runs are leased (`claim_run`, `record_page`): a page's fixes, the hashes it saw and the next
offset are written in one transaction by the caller."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import psycopg
from psycopg import AsyncConnection, AsyncCursor
from psycopg.rows import dict_row

from mcsync.mirror import Contact, LedgerMember
from mcsync.queries import statements
from mcsync.rows import contact_from_row, ledger_from_row

if TYPE_CHECKING:
    from mcsync.reconcile import Fixes

AConn = AsyncConnection
Cursor = AsyncCursor[dict[str, Any]]


@dataclass
class MirrorRows:
    """What Postgres holds about one user's audience: the contacts, the links (member hash,
    contact, when it was synced), the queue's pending changes, the ledger, the rejections."""

    contacts: list[Contact]
    links: list[tuple[str, UUID, datetime]]
    pending: list[tuple[UUID, datetime]]
    ledger: dict[str, LedgerMember]
    rejections: list[dict[str, Any]]


async def _rows(cur: Cursor, statement: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    await cur.execute(statement, params)
    return await cur.fetchall()


async def read_mirror(cur: Cursor, user_id: UUID, audience_id: str) -> MirrorRows:
    params = {"user_id": user_id, "audience_id": audience_id}
    contacts = [contact_from_row(r) for r in await _rows(cur, statements().USER_CONTACTS, params)]
    links = [
        (r["email_hash"], r["contact_id"], r["changed_at"])
        for r in await _rows(cur, statements().AUDIENCE_LINKS, params)
    ]
    queued = await _rows(cur, statements().PENDING_CHANGES, params)
    ledger = {
        r["email_hash"]: ledger_from_row(r)
        for r in await _rows(cur, statements().AUDIENCE_LEDGER, params)
    }
    rejections = await _rows(cur, statements().USER_REJECTIONS, params)
    pending = [(r["contact_id"], r["changed_at"]) for r in queued]
    return MirrorRows(contacts, links, pending, ledger, rejections)


def user_contacts(conn: psycopg.Connection[Any], user_id: UUID) -> list[Contact]:
    """The user's contacts as mcsync reads them (through the source mapping's view)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(statements().USER_CONTACTS, {"user_id": user_id})
        return [contact_from_row(r) for r in cur.fetchall()]


async def read_connection(cur: Cursor, user_id: UUID) -> dict[str, Any] | None:
    await cur.execute(statements().GET_CONNECTION, {"user_id": user_id})
    return await cur.fetchone()


async def claim_run(
    cur: Cursor, user_id: UUID, owner: str, lease_seconds: float
) -> dict[str, Any] | None:
    """Lease the user's requested run; its row, or None when there is none to run."""
    await cur.execute(
        statements().CLAIM_RECONCILIATION,
        {"user_id": user_id, "owner": owner, "lease_seconds": lease_seconds},
    )
    return await cur.fetchone()


async def seen_hashes(cur: Cursor, user_id: UUID) -> set[str]:
    """The members a run's earlier pages listed."""
    return {
        r["email_hash"] for r in await _rows(cur, statements().RECONCILE_SEEN, {"user_id": user_id})
    }


async def write_fixes(conn: AConn[Any], fixes: Fixes, user_id: UUID, audience_id: str) -> None:
    params: dict[str, Any] = {"user_id": user_id, "audience_id": audience_id}
    if fixes.ledger_deletes:
        await conn.execute(
            statements().DELETE_LEDGER, {**params, "hashes": sorted(fixes.ledger_deletes)}
        )
    if fixes.ledger_rows:
        await conn.execute(
            statements().CORRECT_LEDGER,
            {**params, "rows": json.dumps(list(fixes.ledger_rows.values()))},
        )
    if fixes.adopt:
        await conn.execute(
            statements().ADOPT_ORPHANS,
            {**params, "ids": list(fixes.adopt), "hashes": list(fixes.adopt.values())},
        )
    if fixes.resync:
        await conn.execute(
            statements().QUEUE_RESYNC, {**params, "ids": sorted(fixes.resync, key=str)}
        )
    if fixes.deletes:
        ids = list(fixes.deletes)
        await conn.execute(
            statements().QUEUE_DELETES,
            {**params, "ids": ids, "emails": [fixes.deletes[i] for i in ids]},
        )
    if fixes.queued:
        await conn.execute(statements().NOTIFY)


async def record_page(
    conn: AConn[Any],
    user_id: UUID,
    owner: str,
    hashes: list[str],
    *,
    next_offset: int,
    queued: int,
    lease_seconds: float,
) -> bool:
    """Note the members a page listed and advance the run; False if the lease is lost or the
    run was cancelled (the caller rolls the page back)."""
    await conn.execute(statements().RECORD_RECONCILE_SEEN, {"user_id": user_id, "hashes": hashes})
    advanced = await conn.execute(
        statements().ADVANCE_RECONCILIATION,
        {
            "user_id": user_id,
            "owner": owner,
            "next_offset": next_offset,
            "queued": queued,
            "lease_seconds": lease_seconds,
        },
    )
    return bool(advanced.rowcount)


async def finish_run(
    conn: AConn[Any], user_id: UUID, owner: str, error: str | None, queued: int
) -> None:
    await conn.execute(
        statements().FINISH_RECONCILIATION,
        {"user_id": user_id, "owner": owner, "error": error, "queued": queued},
    )


async def close_run(conn: AConn[Any], user_id: UUID, audience_id: str) -> None:
    """A run that went through the whole audience: forget its hashes, note the full sync."""
    await conn.execute(statements().CLEAR_RECONCILE_SEEN, {"user_id": user_id})
    await conn.execute(
        statements().MARK_FULL_SYNCED, {"user_id": user_id, "audience_id": audience_id}
    )


async def stale_runs(conn: AConn[Any]) -> list[UUID]:
    cur = await conn.execute(statements().STALE_RECONCILIATIONS)
    return [r[0] for r in await cur.fetchall()]


# --- Sync Now (synchronous connections: the web side, the CLI) ------------------------------


def connection_row(conn: psycopg.Connection[Any], user_id: UUID) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(statements().GET_CONNECTION, {"user_id": user_id}).fetchone()


def start_run(
    conn: psycopg.Connection[Any],
    user_id: UUID,
    audience_id: str,
    min_interval: float,
    *,
    by_user: bool = True,
) -> float | None:
    """Request a run. None when started; else the seconds until one may start (the last one
    is too recent), which may be unknown (0). `by_user`: the user's own Sync Now, which starts
    their hourly limit."""
    params = {"user_id": user_id, "min_interval": min_interval}
    with conn.cursor(row_factory=dict_row) as cur:
        started = cur.execute(
            statements().START_RECONCILIATION,
            {**params, "audience_id": audience_id, "by_user": by_user},
        ).fetchone()
        if started is None:
            wait = cur.execute(statements().RECONCILIATION_RETRY_AFTER, params).fetchone()
            return float(wait["seconds"]) if wait else 0.0
        cur.execute(statements().CLEAR_RECONCILE_SEEN, {"user_id": user_id})
    return None


def cancel_run(conn: psycopg.Connection[Any], user_id: UUID, reason: str) -> None:
    conn.execute(
        statements().FINISH_RECONCILIATION,
        {"user_id": user_id, "owner": None, "error": reason, "queued": 0},
    )


def run_unfinished(conn: psycopg.Connection[Any], user_id: UUID) -> bool | None:
    """Whether the user's run is still going (None: the user never asked for one)."""
    with conn.cursor(row_factory=dict_row) as cur:
        run = cur.execute(statements().GET_RECONCILIATION, {"user_id": user_id}).fetchone()
    return None if run is None else run["finished_at"] is None


def sync_now_available_in(conn: psycopg.Connection[Any], user_id: UUID, min_interval: float) -> int:
    """Seconds until the user may ask for Sync Now again (0: now)."""
    with conn.cursor(row_factory=dict_row) as cur:
        wait = cur.execute(
            statements().RECONCILIATION_RETRY_AFTER,
            {"user_id": user_id, "min_interval": min_interval},
        ).fetchone()
    return int(wait["seconds"]) if wait else 0
