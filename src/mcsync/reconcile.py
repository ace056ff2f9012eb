"""Full reconciliation: list the audience page by page and compare it with the mirror.

Used by Sync Now (`run_reconciliation`: queue only the contacts whose member differs) and by
`mcsync verify` (`audit`: read-only, report every difference).

Why the ledger is corrected here: the worker's planner trusts the ledger ("what Mailchimp was
last told") and sends nothing when the ledger already agrees with a contact. When Mailchimp
turns out to disagree (a member edited, untagged or deleted by hand), queueing the contact
alone would be a no-op, so the run first makes the ledger say what Mailchimp really has
(fields unknown, tag not set, member not there) and then queues the contact.

Owned members with no contact linked to them any more (the link was forgotten, e.g. after an
audience change and back) are archived through the worker's ordinary "contact deleted" path:
the run links a placeholder contact id (a uuid5 of user, audience and member, so a resumed run
reuses it) to the member and queues a 'delete' for it. The worker sees a deleted contact that
was synced as that member, finds no contact left with the address, archives the member and
drops the placeholder link. No special case in the worker, and nothing written to `contacts`.

Resumable: each page's queue rows, ledger corrections, the hashes seen and the next offset are
committed together, under a lease on the run's row. A run whose process died is taken over
once its lease expires (the web app's sweeper, or `mcsync sync-now`) and goes on at the next
page; re-doing a page is harmless because every write is an idempotent upsert.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import httpx
import psycopg

from mcsync import reconcile_store as store
from mcsync.config import Settings
from mcsync.crypto import TokenCipher
from mcsync.database import Database
from mcsync.logging import get_logger
from mcsync.mailchimp.client import ClientFactory, MailchimpClient
from mcsync.mailchimp.errors import MailchimpError, disposition
from mcsync.mailchimp.models import Member
from mcsync.mirror import DesiredMember, LedgerMember, contact_recency, desired_members

log = get_logger("mcsync.reconcile")

PAGE_SIZE = 1000
LEASE_SECONDS = 120.0
SYNC_NOW_INTERVAL = 3600  # seconds: Sync Now at most once an hour per user
_PLACEHOLDER_NS = uuid.UUID("6d637379-6e63-4f72-8068-616e4f727068")
_FIELDS = ("merge_fields", "tags")


class ReconcileError(RuntimeError):
    """The run cannot go on (no connection, no audience, audience changed meanwhile)."""


@dataclass(frozen=True)
class Difference:
    """One way the audience differs from the mirror."""

    kind: str  # missing | fields | tags | stale_tags | restore | orphan
    email_hash: str
    email: str
    detail: str
    contact_ids: tuple[UUID, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["contact_ids"] = [str(c) for c in self.contact_ids]
        return out


@dataclass
class Snapshot:
    """What Postgres says about one user's audience, read once per run."""

    desired: dict[str, DesiredMember]
    ledger: dict[str, LedgerMember]
    links: dict[str, list[UUID]]  # member hash -> contacts last synced as that member
    existing: set[UUID]
    ignored_fields: dict[UUID, set[str]] = field(default_factory=dict)  # partial acceptances
    rejected: set[UUID] = field(default_factory=set)  # refused until the contact changes

    def skipped(self, desired: DesiredMember) -> bool:
        """Every contact of this member was refused by Mailchimp: not drift, nothing to do."""
        return bool(desired.contact_ids) and all(c in self.rejected for c in desired.contact_ids)

    def ignored_for(self, desired: DesiredMember) -> set[str]:
        out: set[str] = set()
        for cid in desired.contact_ids:
            out |= self.ignored_fields.get(cid, set())
        return out


# --- comparing (pure) ---------------------------------------------------------------------


def _active_tags(member: Member) -> set[str]:
    return {t.name.strip().casefold() for t in member.tags}


def compare_member(member: Member, snap: Snapshot) -> list[Difference]:
    """Differences for one listed member."""
    email_hash = member.id.lower()
    want = snap.desired.get(email_hash)
    entry = snap.ledger.get(email_hash)
    if want is None:
        if entry is not None and not entry.archived and member.status != "archived":
            return [
                Difference(
                    "orphan",
                    email_hash,
                    member.email_address,
                    "mcsync put this member in the audience and no contact has the address now",
                    tuple(snap.links.get(email_hash, ())),
                )
            ]
        return []
    if snap.skipped(want):
        return []
    if member.status == "archived":
        # Archived by mcsync and wanted again: restore. Archived by someone else: mcsync never
        # raises a member's status, so that is not drift.
        if entry is not None and entry.maybe_archived:
            return [
                Difference(
                    "restore",
                    email_hash,
                    want.email,
                    "archived, but a contact has this address again",
                    want.contact_ids,
                )
            ]
        return []
    out: list[Difference] = []
    ignored = snap.ignored_for(want)
    changed = [
        f"{name}: {str(member.merge_fields.get(name) or '')!r} -> {value!r}"
        for name, value in sorted(want.merge_fields.items())
        if name not in ignored and str(member.merge_fields.get(name) or "") != value
    ]
    if changed:
        out.append(
            Difference("fields", email_hash, want.email, "; ".join(changed), want.contact_ids)
        )
    active = _active_tags(member)
    missing = [t for t in want.tags if t.casefold() not in active]
    if missing:
        out.append(
            Difference(
                "tags",
                email_hash,
                want.email,
                "missing tags: " + ", ".join(missing),
                want.contact_ids,
            )
        )
    wanted = {t.casefold() for t in want.tags}
    stale = [t for t in (entry.tags if entry else ()) if t.casefold() in active - wanted]
    if stale:
        out.append(
            Difference(
                "stale_tags",
                email_hash,
                want.email,
                "tags mcsync set that no contact has now: " + ", ".join(stale),
                want.contact_ids,
            )
        )
    return out


def missing_members(snap: Snapshot, seen: set[str]) -> list[Difference]:
    """Desired members the listing never showed."""
    return [
        Difference("missing", h, d.email, "not in the audience", d.contact_ids)
        for h, d in sorted(snap.desired.items())
        if h not in seen and not snap.skipped(d)
    ]


async def archived_among(
    client: MailchimpClient, audience_id: str, hashes: set[str], *, page_size: int = PAGE_SIZE
) -> list[Member]:
    """The members of `hashes` that are archived. Mailchimp's member listing without a status
    filter leaves archived members out (the emulator does the same), so a desired member the
    listing never showed may be archived rather than missing: by mcsync (a restore) or by
    someone else (never drift). Listed with `status=archived`, one call per 1,000 archived
    members, and only when some desired member went unseen."""
    if not hashes:
        return []
    found: list[Member] = []
    pages = client.iter_pages(audience_id, page_size=page_size, status="archived", fields=_FIELDS)
    async for page in pages:
        found.extend(m for m in page.members if m.id.lower() in hashes)
    return found


def unseen(snap: Snapshot, seen: set[str]) -> set[str]:
    """Desired members the (unfiltered) listing did not show."""
    return {h for h in snap.desired if h not in seen}


def placeholder_id(user_id: UUID, audience_id: str, email_hash: str) -> UUID:
    """The contact id an orphaned member is adopted under (stable, so a resumed run reuses it)."""
    return uuid.uuid5(_PLACEHOLDER_NS, f"{user_id}:{audience_id}:{email_hash}")


@dataclass
class Fixes:
    """The writes that make the worker repair a set of differences."""

    resync: set[UUID] = field(default_factory=set)
    deletes: dict[UUID, str] = field(default_factory=dict)  # contact id -> address it had
    adopt: dict[UUID, str] = field(default_factory=dict)  # placeholder id -> member hash
    ledger_rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    ledger_deletes: set[str] = field(default_factory=set)

    @property
    def queued(self) -> int:
        return len(self.resync) + len(self.deletes)


def fixes_for(
    diffs: Iterable[Difference],
    snap: Snapshot,
    *,
    user_id: UUID,
    audience_id: str,
    members: Mapping[str, Member] | None = None,
) -> Fixes:
    """The queue rows and ledger corrections that make the worker repair `diffs`."""
    fixes = Fixes()
    members = members or {}
    for d in diffs:
        entry = snap.ledger.get(d.email_hash)
        if d.kind == "orphan":
            linked = snap.links.get(d.email_hash, [])
            for cid in linked:
                if cid in snap.existing:
                    fixes.resync.add(cid)  # still here under another address (or none)
                else:
                    fixes.deletes[cid] = d.email
            if not linked:
                pid = placeholder_id(user_id, audience_id, d.email_hash)
                fixes.adopt[pid] = d.email_hash
                fixes.deletes[pid] = d.email
            continue
        fixes.resync.update(d.contact_ids)
        if entry is None:
            continue  # the planner treats an unknown member as new and sends everything
        if d.kind == "missing":
            fixes.ledger_deletes.add(d.email_hash)
        elif d.kind in ("fields", "tags"):
            row = fixes.ledger_rows.setdefault(
                d.email_hash,
                {"email_hash": d.email_hash, "forget_fields": False, "tags": list(entry.tags)},
            )
            if d.kind == "fields":
                row["forget_fields"] = True
            else:
                member = members.get(d.email_hash)
                active = _active_tags(member) if member else set()
                # Forget having set the tags Mailchimp lacks, so the worker sets them again.
                row["tags"] = [t for t in row["tags"] if t.casefold() in active]
    return fixes


# --- reading Postgres (its statements: mcsync.reconcile_store) ---------------------------


def _snapshot(rows: store.MirrorRows) -> Snapshot:
    links: dict[str, list[UUID]] = {}
    # Recency as the worker sees it (one definition: mirror.contact_recency).
    synced: list[tuple[UUID, datetime]] = []
    for email_hash, contact_id, changed_at in rows.links:
        links.setdefault(email_hash, []).append(contact_id)
        synced.append((contact_id, changed_at))
    recency = contact_recency(synced, rows.pending)
    existing = {c.id for c in rows.contacts}
    snap = Snapshot(desired_members(rows.contacts, recency), rows.ledger, links, existing)
    for r in rows.rejections:
        if r["severity"] == "error":
            snap.rejected.add(r["contact_id"])
        elif r["field"]:
            name = r["field"].split(".")[-1].upper()
            snap.ignored_fields.setdefault(r["contact_id"], set()).add(name)
    return snap


def _usable(row: dict[str, Any] | None) -> dict[str, Any]:
    """The user's connection row, if a run can use it."""
    if row is None:
        raise ReconcileError("no Mailchimp connection for this user")
    if not row["audience_id"]:
        raise ReconcileError("no audience chosen yet")
    return row


def _audit_facts(
    conn: psycopg.Connection[Any], user_id: UUID
) -> tuple[dict[str, Any], store.MirrorRows]:
    """The connection row and the mirror an audit compares against (one step)."""
    conn_row = _usable(store.connection_row(conn, user_id))
    return conn_row, store.read_mirror(conn, user_id, conn_row["audience_id"])


def _client(
    settings: Settings,
    cipher: TokenCipher,
    conn_row: Mapping[str, Any],
    http: httpx.AsyncClient | None,
) -> MailchimpClient:
    token = cipher.decrypt(conn_row["access_token_encrypted"], conn_row["user_id"])
    return ClientFactory.from_settings(settings, http).client(
        conn_row["dc"], token, log_context={"user_id": str(conn_row["user_id"])}
    )


# --- Sync Now -----------------------------------------------------------------------------


def request_sync_now(
    conn: psycopg.Connection[Any],
    user_id: UUID,
    *,
    min_interval: float = SYNC_NOW_INTERVAL,
    by_user: bool = True,
) -> int:
    """Record a Sync Now request. Returns 0 when accepted, else seconds until it would be.

    `by_user`: the user's own button, which starts their hourly limit; an operator's
    `mcsync sync-now` or a reconnect's check (False) does not.
    Raises ReconcileError when there is no connection or no audience yet."""
    with conn.transaction():
        row = _usable(store.connection_row(conn, user_id))
        wait = store.start_run(conn, user_id, row["audience_id"], min_interval, by_user=by_user)
    return 0 if wait is None else max(1, int(wait))


def start_operator_run(conn: psycopg.Connection[Any], user_id: UUID) -> bool:
    """The operator's Sync Now (`mcsync sync-now`, the /admin page): no hourly limit, and the
    user's own limit is not started by it; a run still unfinished is resumed where it stopped,
    not restarted. True when a new run was started. Raises ReconcileError as request_sync_now."""
    if store.run_unfinished(conn, user_id):
        return False
    request_sync_now(conn, user_id, min_interval=0, by_user=False)
    return True


def cancel_run(conn: psycopg.Connection[Any], user_id: UUID, reason: str) -> None:
    """Stop a run (disconnect): its next page commit finds it finished and rolls back."""
    store.cancel_run(conn, user_id, reason)


@dataclass(frozen=True)
class RunResult:
    """What a finished run did (`resumed_at`: the offset it started from)."""

    user_id: UUID
    listed: int
    queued: int
    differences: int
    resumed_at: int


@dataclass
class _Run:
    """A claimed run: what it compares against, and how far it got."""

    user_id: UUID
    owner: str
    audience_id: str
    connection: dict[str, Any]
    snap: Snapshot
    seen: set[str]
    offset: int
    listed: int = 0
    differences: int = 0
    queued: int = 0


async def run_reconciliation(
    db: Database,
    settings: Settings,
    cipher: TokenCipher,
    user_id: UUID,
    *,
    owner: str,
    page_size: int = PAGE_SIZE,
    http: httpx.AsyncClient | None = None,
) -> RunResult | None:
    """Run (or resume) the user's requested reconciliation on the process's `db`. None when
    there is nothing to run, another process holds it, or it had to stop (the log says why).

    Each step borrows a pooled connection for itself only (claim, one per page, the end):
    none is held while Mailchimp is asked."""
    run = await _claim_run(db, user_id, owner)
    if run is None:
        return None
    start = run.offset
    log.info(
        "reconcile_started", user_id=str(user_id), audience_id=run.audience_id, resumed_at=start
    )
    client = _client(settings, cipher, run.connection, http)
    try:
        async for page in client.iter_pages(
            run.audience_id, offset=run.offset, page_size=page_size, fields=_FIELDS
        ):
            await _fix_page(db, run, page.members)
        archived = await archived_among(
            client, run.audience_id, unseen(run.snap, run.seen), page_size=page_size
        )
        await _fix_missing_and_finish(db, run, archived)
    except ReconcileError as exc:
        log.warning("reconcile_stopped", user_id=str(user_id), reason=str(exc))
        return None
    except MailchimpError as exc:
        if disposition(exc) in ("throttled", "transient"):
            raise  # leave the run for a later takeover
        # Retrying cannot help (token revoked, audience gone): end the run and say why.
        await db.run(store.finish_run, user_id, owner, str(exc)[:500], 0)
        log.warning("reconcile_failed", user_id=str(user_id), error=str(exc))
        return None
    finally:
        await client.aclose()
    log.info(
        "reconcile_finished",
        user_id=str(user_id),
        audience_id=run.audience_id,
        listed=run.listed,
        differences=run.differences,
        queued=run.queued,
        resumed_at=start,
    )
    return RunResult(user_id, run.listed, run.queued, run.differences, start)


async def _claim_run(db: Database, user_id: UUID, owner: str) -> _Run | None:
    """Lease the user's requested run and read what it compares against; None when there is
    none to run, or it cannot go on (then it is finished with the reason)."""
    claimed = await db.run(store.claim_run, user_id, owner, LEASE_SECONDS)
    if claimed is None:
        return None
    try:
        conn_row = _usable(claimed.connection)
        if conn_row["audience_id"] != claimed.run["audience_id"]:
            raise ReconcileError("the audience changed while Sync Now was running")
    except ReconcileError as exc:
        await db.run(store.finish_run, user_id, owner, str(exc), 0)
        log.info("reconcile_abandoned", user_id=str(user_id), reason=str(exc))
        return None
    assert claimed.mirror is not None and claimed.seen is not None  # read for a usable row
    audience_id: str = claimed.run["audience_id"]
    snap = _snapshot(claimed.mirror)
    offset = int(claimed.run["next_offset"])
    return _Run(user_id, owner, audience_id, conn_row, snap, claimed.seen, offset)


async def _fix_page(db: Database, run: _Run, page: list[Member]) -> None:
    """Compare one page, and commit its fixes, the hashes seen and the next offset together."""
    members = {m.id.lower(): m for m in page}
    diffs = [d for m in page for d in compare_member(m, run.snap)]
    fixes = fixes_for(
        diffs, run.snap, user_id=run.user_id, audience_id=run.audience_id, members=members
    )
    next_offset = run.offset + len(page)
    advanced = await db.run(
        store.commit_page,
        fixes,
        run.user_id,
        run.audience_id,
        run.owner,
        list(members),
        next_offset=next_offset,
        lease_seconds=LEASE_SECONDS,
    )
    if not advanced:
        # Lost the lease, or the run was cancelled: the page was rolled back.
        raise ReconcileError("the run was taken over or cancelled")
    run.offset = next_offset
    run.seen.update(members)
    run.listed += len(page)
    run.differences += len(diffs)
    run.queued += fixes.queued


async def _fix_missing_and_finish(db: Database, run: _Run, archived: list[Member]) -> None:
    """After the last page: restore what mcsync archived and a contact wants again, queue the
    members the listings never showed, and end the run."""
    diffs = [d for m in archived for d in compare_member(m, run.snap)]
    diffs += missing_members(run.snap, run.seen | {m.id.lower() for m in archived})
    fixes = fixes_for(
        diffs,
        run.snap,
        user_id=run.user_id,
        audience_id=run.audience_id,
        members={m.id.lower(): m for m in archived},
    )
    if not await db.run(store.commit_last_page, fixes, run.user_id, run.audience_id, run.owner):
        # Cancelled, restarted or taken over while the archived members were listed.
        raise ReconcileError("the run was taken over or cancelled")
    run.differences += len(diffs)
    run.queued += fixes.queued


async def stale_runs(db: Database) -> list[UUID]:
    """Unfinished runs nobody holds: their process died, or never got to start them."""
    return await db.run(store.stale_runs)


# --- verify -------------------------------------------------------------------------------


async def audit(
    db: Database,
    settings: Settings,
    cipher: TokenCipher,
    user_id: UUID,
    *,
    page_size: int = PAGE_SIZE,
    http: httpx.AsyncClient | None = None,
) -> list[Difference]:
    """Every difference between the user's contacts and the audience. Writes nothing; a
    pooled connection of `db` is borrowed once, to read the mirror, before Mailchimp is."""
    conn_row, rows = await db.run(_audit_facts, user_id)
    snap = _snapshot(rows)
    diffs: list[Difference] = []
    seen: set[str] = set()
    async with _client(settings, cipher, conn_row, http) as client:
        pages = client.iter_pages(conn_row["audience_id"], page_size=page_size, fields=_FIELDS)
        async for page in pages:
            for member in page.members:
                seen.add(member.id.lower())
                diffs.extend(compare_member(member, snap))
        archived = await archived_among(
            client, conn_row["audience_id"], unseen(snap, seen), page_size=page_size
        )
    for member in archived:
        seen.add(member.id.lower())
        diffs.extend(compare_member(member, snap))
    diffs.extend(missing_members(snap, seen))
    return diffs
