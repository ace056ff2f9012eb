"""Reconciliation's Postgres side: every statement Sync Now, `mcsync sync-now` and `mcsync
verify` run, each a named one of `mcsync.queries`. What the rows mean is `mcsync.reconcile`.

Synchronous, each function one step on one connection (`mcsync.database.Database.run` runs it
on a pooled one): a run is leased and what it compares against read (`claim_run`); a page's
fixes, the hashes it saw and the next offset are written in one transaction (`commit_page`,
rolled back when the lease was lost); the last page's fixes and the run's end likewise
(`commit_last_page`). No connection is held between steps, so none across a Mailchimp call."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from mcsync.mirror import Contact, LedgerMember
from mcsync.queries import statements
from mcsync.rows import contact_from_row, ledger_from_row

if TYPE_CHECKING:
    from mcsync.reconcile import Fixes

Conn = psycopg.Connection[Any]


@dataclass
class MirrorRows:
    """What Postgres holds about one user's audience: the contacts, the links (member hash,
    contact, when it was synced), the queue's pending changes, the ledger, the rejections."""

    contacts: list[Contact]
    links: list[tuple[str, UUID, datetime]]
    pending: list[tuple[UUID, datetime]]
    ledger: dict[str, LedgerMember]
    rejections: list[dict[str, Any]]


@dataclass
class ClaimedRun:
    """A leased run: its row, the user's connection row (None: gone), and, when that row can
    serve the run, what the run compares against (the mirror, the hashes earlier pages saw)."""

    run: dict[str, Any]
    connection: dict[str, Any] | None
    mirror: MirrorRows | None = None
    seen: set[str] | None = None


def _rows(conn: Conn, statement: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(statement, params).fetchall()


def read_mirror(conn: Conn, user_id: UUID, audience_id: str) -> MirrorRows:
    """The user's contacts, links, pending changes, ledger and rejections for `audience_id`."""
    params = {"user_id": user_id, "audience_id": audience_id}
    contacts = [contact_from_row(r) for r in _rows(conn, statements().USER_CONTACTS, params)]
    links = [
        (r["email_hash"], r["contact_id"], r["changed_at"])
        for r in _rows(conn, statements().AUDIENCE_LINKS, params)
    ]
    queued = _rows(conn, statements().PENDING_CHANGES, params)
    ledger = {
        r["email_hash"]: ledger_from_row(r)
        for r in _rows(conn, statements().AUDIENCE_LEDGER, params)
    }
    rejections = _rows(conn, statements().USER_REJECTIONS, params)
    pending = [(r["contact_id"], r["changed_at"]) for r in queued]
    return MirrorRows(contacts, links, pending, ledger, rejections)


def user_contacts(conn: Conn, user_id: UUID) -> list[Contact]:
    """The user's contacts as mcsync reads them (through the source mapping's view)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(statements().USER_CONTACTS, {"user_id": user_id})
        return [contact_from_row(r) for r in cur.fetchall()]


def claim_run(conn: Conn, user_id: UUID, owner: str, lease_seconds: float) -> ClaimedRun | None:
    """Lease the user's requested run, then read the connection row and, when its audience is
    still the run's, what the run compares against. None when there is no run to take."""
    with conn.cursor(row_factory=dict_row) as cur:
        run = cur.execute(
            statements().CLAIM_RECONCILIATION,
            {"user_id": user_id, "owner": owner, "lease_seconds": lease_seconds},
        ).fetchone()
    if run is None:
        return None
    connection = connection_row(conn, user_id)
    if connection is None or connection["audience_id"] != run["audience_id"]:
        return ClaimedRun(run, connection)
    mirror = read_mirror(conn, user_id, run["audience_id"])
    return ClaimedRun(run, connection, mirror, seen_hashes(conn, user_id))


def seen_hashes(conn: Conn, user_id: UUID) -> set[str]:
    """The members a run's earlier pages listed."""
    return {
        r["email_hash"] for r in _rows(conn, statements().RECONCILE_SEEN, {"user_id": user_id})
    }


def write_fixes(conn: Conn, fixes: Fixes, user_id: UUID, audience_id: str) -> None:
    params: dict[str, Any] = {"user_id": user_id, "audience_id": audience_id}
    if fixes.ledger_deletes:
        conn.execute(statements().DELETE_LEDGER, {**params, "hashes": sorted(fixes.ledger_deletes)})
    if fixes.ledger_rows:
        conn.execute(
            statements().CORRECT_LEDGER,
            {**params, "rows": json.dumps(list(fixes.ledger_rows.values()))},
        )
    if fixes.adopt:
        conn.execute(
            statements().ADOPT_ORPHANS,
            {**params, "ids": list(fixes.adopt), "hashes": list(fixes.adopt.values())},
        )
    if fixes.resync:
        conn.execute(statements().QUEUE_RESYNC, {**params, "ids": sorted(fixes.resync, key=str)})
    if fixes.deletes:
        ids = list(fixes.deletes)
        conn.execute(
            statements().QUEUE_DELETES,
            {**params, "ids": ids, "emails": [fixes.deletes[i] for i in ids]},
        )
    if fixes.queued:
        conn.execute(statements().NOTIFY)


def record_page(
    conn: Conn,
    user_id: UUID,
    owner: str,
    hashes: list[str],
    *,
    next_offset: int,
    queued: int,
    lease_seconds: float,
) -> bool:
    """Note the members a page listed and advance the run; False if the lease is lost or the
    run was cancelled."""
    conn.execute(statements().RECORD_RECONCILE_SEEN, {"user_id": user_id, "hashes": hashes})
    advanced = conn.execute(
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


def commit_page(
    conn: Conn,
    fixes: Fixes,
    user_id: UUID,
    audience_id: str,
    owner: str,
    hashes: list[str],
    *,
    next_offset: int,
    lease_seconds: float,
) -> bool:
    """One page in one transaction: its fixes, the hashes it saw and the next offset. False,
    with nothing written, when the lease was lost or the run cancelled meanwhile."""
    advanced = False
    with conn.transaction():
        write_fixes(conn, fixes, user_id, audience_id)
        advanced = record_page(
            conn,
            user_id,
            owner,
            hashes,
            next_offset=next_offset,
            queued=fixes.queued,
            lease_seconds=lease_seconds,
        )
        if not advanced:
            raise psycopg.Rollback()  # leaves the block, rolled back
    return advanced


def finish_run(conn: Conn, user_id: UUID, owner: str, error: str | None, queued: int) -> bool:
    """End the run `owner` holds; False when it holds none (taken over, cancelled, restarted)."""
    cur = conn.execute(
        statements().FINISH_RECONCILIATION,
        {"user_id": user_id, "owner": owner, "error": error, "queued": queued},
    )
    return cur.rowcount > 0


def close_run(conn: Conn, user_id: UUID, audience_id: str) -> None:
    """A run that went through the whole audience: forget its hashes, note the full sync."""
    conn.execute(statements().CLEAR_RECONCILE_SEEN, {"user_id": user_id})
    conn.execute(statements().MARK_FULL_SYNCED, {"user_id": user_id, "audience_id": audience_id})


def commit_last_page(
    conn: Conn, fixes: Fixes, user_id: UUID, audience_id: str, owner: str
) -> bool:
    """After the last page, in one transaction: the last fixes, the run finished and closed.
    False, with nothing written, when the run is no longer this owner's (cancelled by a
    disconnect, restarted, or taken over while the archived members were listed): its fixes
    and its closing (which forgets the seen hashes) would belong to another run."""
    finished = False
    with conn.transaction():
        write_fixes(conn, fixes, user_id, audience_id)
        finished = finish_run(conn, user_id, owner, None, fixes.queued)
        if not finished:
            raise psycopg.Rollback()  # leaves the block, rolled back
        close_run(conn, user_id, audience_id)
    return finished


def stale_runs(conn: Conn) -> list[UUID]:
    """Unfinished runs nobody holds."""
    return [r[0] for r in conn.execute(statements().STALE_RECONCILIATIONS).fetchall()]


# --- Sync Now's requests (the web side, the CLI) ---------------------------------------------


def connection_row(conn: Conn, user_id: UUID) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(statements().GET_CONNECTION, {"user_id": user_id}).fetchone()


def start_run(
    conn: Conn,
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


def cancel_run(conn: Conn, user_id: UUID, reason: str) -> None:
    conn.execute(
        statements().FINISH_RECONCILIATION,
        {"user_id": user_id, "owner": None, "error": reason, "queued": 0},
    )


def run_unfinished(conn: Conn, user_id: UUID) -> bool | None:
    """Whether the user's run is still going (None: the user never asked for one)."""
    with conn.cursor(row_factory=dict_row) as cur:
        run = cur.execute(statements().GET_RECONCILIATION, {"user_id": user_id}).fetchone()
    return None if run is None else run["finished_at"] is None


def sync_now_available_in(conn: Conn, user_id: UUID, min_interval: float) -> int:
    """Seconds until the user may ask for Sync Now again (0: now)."""
    with conn.cursor(row_factory=dict_row) as cur:
        wait = cur.execute(
            statements().RECONCILIATION_RETRY_AFTER,
            {"user_id": user_id, "min_interval": min_interval},
        ).fetchone()
    return int(wait["seconds"]) if wait else 0
