"""The worker's Postgres side: claims, the facts the planner needs, and recording outcomes.

Thin on purpose: every statement is in `mcsync.queries` (rendered for the store's schema
when the store is made); this module only moves rows between Postgres and the planner's
types. No transaction is ever held across a Mailchimp call."""

from __future__ import annotations

import select
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg import AsyncConnection, pq
from psycopg.rows import dict_row
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool

from mcsync.admin_store import health_event_params
from mcsync.arrays import Int8Array, TextArray, UuidArray
from mcsync.emails import normalize_email, subscriber_hash
from mcsync.logging import get_logger
from mcsync.mirror import LedgerMember, contact_recency
from mcsync.queries import CHANNEL, Statements, statements
from mcsync.rows import contact_of, ledger_of, ledger_params, load_json
from mcsync.worker.lanes import Lanes
from mcsync.worker.types import Account, Event, Facts, Outcomes

__all__ = ["CHANNEL", "Hints", "WorkerStore", "connection_rows"]


async def connection_rows(
    pool: AsyncConnectionPool, queries: Statements | None = None
) -> list[dict[str, Any]]:
    """Every connection's `mcsync status` row, for the metrics (`STATUS_ROWS`), as `queries`
    renders it (this process's schema when None)."""
    queries = queries or statements()
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(queries.STATUS_ROWS)
        return await cur.fetchall()


class Hints:
    """The worker's dedicated LISTEN connection for the triggers' hint (NOTIFY on `CHANNEL`).

    A session of its own, never a pooled connection: a LISTEN lives as long as its session."""

    def __init__(self, conn: AsyncConnection[Any], queries: Statements) -> None:
        self._conn = conn
        self._queries = queries

    @classmethod
    @asynccontextmanager
    async def listening(cls, database_url: str, schema: str | None = None) -> AsyncIterator[Hints]:
        """A connection that LISTENs on `CHANNEL`, closed on leaving."""
        queries = statements(schema)
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await conn.execute(queries.LISTEN)
            yield cls(conn, queries)

    async def arrived(self, seconds: float) -> bool:
        """Whether a hint arrives within `seconds`."""
        got = False
        async for _ in self._conn.notifies(timeout=seconds, stop_after=1):
            got = True
        return got

    async def ping(self) -> None:
        """A round trip: raises if the connection is gone."""
        await self._conn.execute(self._queries.PING)


_log = get_logger("mcsync.worker")


async def configure_connection(conn: AsyncConnection[Any]) -> None:
    """Session settings for the worker's pooled connections (the pool's `configure`).

    Every worker statement reads or writes at most a claim's worth of rows by key (`= ANY` of
    up to a few hundred ids, hashes or addresses). The planner prices a filter of such an array
    as nearly free, so on tables of some tens of thousands of rows it prefers reading the whole
    table: 100 ms instead of 3 ms for the contacts of a pass at 50,000 contacts, a cost per
    contact that grew with the tables. Sequential scans are only a last resort here; tables
    without a usable index are still read (the setting only prices scans, it forbids nothing).
    A plain SET, so it also holds through a session-mode pooler."""
    await conn.execute(statements().SESSION_SETTINGS)
    set_json_loads(load_json, conn)  # a pass's merge fields: one `jsonb` per contact


async def check_connection(conn: AsyncConnection[Any]) -> None:
    """The pool's `check` before lending a connection: raise if it is dead.

    A connection Postgres dropped (a restart, a terminated backend) has something to read: the
    server's FATAL message, or the end of the stream. An idle, healthy one has nothing (the
    worker's pooled connections LISTEN to nothing). So the socket is polled, which costs no
    round trip, and only a connection with something waiting is tested with an empty query
    (psycopg_pool's own check). The pool's stock check paid a round trip on every lending:
    four on a live edit's way to Mailchimp. A connection cut without a word (a network
    partition) passes, and its statement fails as it would have after the check."""
    if conn.closed or conn.pgconn.status != pq.ConnStatus.OK:
        raise psycopg.OperationalError("connection is closed")
    # poll, not select: select refuses descriptors >= 1024 (a worker with many sockets open).
    poller = select.poll()
    poller.register(conn.pgconn.socket, select.POLLIN)
    if poller.poll(0):
        await AsyncConnectionPool.check_connection(conn)


def _add_recorded_addresses(
    maybe_links: dict[UUID, tuple[str, ...]], links: dict[UUID, str], events: Sequence[Event]
) -> None:
    """A contact never synced may still be a member: the one at the address its row recorded
    (the one it had when it first changed), to which a pass of another contact there sent its
    fields or tags (`mirror.borrowed_links`). That pass's maybe-link says so, unless this pass
    read the links before it was written (two passes of the account at once); the recorded
    address says so either way, and planning that member also makes this pass wait for the
    other (`worker.inflight`)."""
    for event in events:
        before = normalize_email(event.email)
        if before is None or event.contact_id in links:
            continue
        had = subscriber_hash(before)
        known = maybe_links.get(event.contact_id, ())
        if had not in known:
            maybe_links[event.contact_id] = (*known, had)


def _rejection_params(rejections: Sequence[dict[str, Any]]) -> dict[str, TextArray]:
    """The rejections (`outcomes._rejection`'s dicts) as `UPSERT_REJECTIONS`' typed arrays."""
    return {
        param: TextArray([r[key] for r in rejections])
        for param, key in (
            ("ids", "contact_id"),
            ("emails", "email"),
            ("severities", "severity"),
            ("reasons", "reason"),
            ("fields", "field"),
            ("details", "detail"),
        )
    }


class WorkerStore:
    """Every Postgres read and write of the worker, for one worker process (`owner`).

    Claims are leases of `lease_seconds` in the name of `owner`; `record` writes only while
    the account is still held."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        owner: str,
        lease_seconds: float,
        *,
        lanes: Lanes | None = None,
        schema: str | None = None,
    ) -> None:
        self.pool = pool
        # Every statement, rendered for `schema` (MCSYNC_SCHEMA when None) now, not per call.
        self.queries = statements(schema)
        self.lanes = lanes
        self.owner = owner
        self.lease_seconds = lease_seconds

    @asynccontextmanager
    async def _connection(
        self, *, housekeeping: bool = False
    ) -> AsyncIterator[AsyncConnection[Any]]:
        """A pooled connection, admitted by the lanes when there are any (see
        mcsync.worker.lanes: an import's passes never hold up other accounts' edits;
        `housekeeping`: not an edit's statement, see `Lanes.turn`)."""
        if self.lanes is None:
            async with self.pool.connection() as conn:
                yield conn
            return
        async with self.lanes.turn(housekeeping=housekeeping), self.pool.connection() as conn:
            yield conn

    async def _lease(
        self, statement: str, *, housekeeping: bool = False, as_dicts: bool = True, **params: Any
    ) -> list[Any]:
        """Run a claiming statement in this worker's name; the rows it leased (dicts, or tuples
        in the statement's column order)."""
        async with (
            self._connection(housekeeping=housekeeping) as conn,
            conn.cursor(row_factory=dict_row) if as_dicts else conn.cursor() as cur,
        ):
            await cur.execute(
                statement, {"owner": self.owner, "lease_seconds": self.lease_seconds, **params}
            )
            return await cur.fetchall()

    async def claim_accounts(self, limit: int, busy: Iterable[UUID]) -> list[Account]:
        """Lease up to `limit` accounts with due work (or a due probe), leaving out `busy`
        (this worker serves them already)."""
        rows = await self._lease(
            self.queries.CLAIM_ACCOUNTS, housekeeping=True, limit=limit, busy=list(busy)
        )
        return [Account.from_row(r) for r in rows]

    async def renew_account(self, user_id: UUID) -> bool:
        """Extend the leases; False when this worker no longer holds the account."""
        async with self._connection(housekeeping=True) as conn:
            cur = await conn.execute(
                self.queries.RENEW_ACCOUNT_LEASE,
                {"user_id": user_id, "owner": self.owner, "lease_seconds": self.lease_seconds},
            )
            row = await cur.fetchone()
            return bool(row and row[0])

    async def mark_archiving(self, account: Account, email_hash: str, status: str) -> None:
        """Note the status a member had just before mcsync archives it (see archive_status)."""
        params = {"user_id": account.user_id, "audience_id": account.audience_id}
        await self._run(
            (self.queries.MARK_ARCHIVING, {**params, "email_hash": email_hash, "status": status})
        )

    async def release_account(self, user_id: UUID) -> None:
        """Give the account's lease back (its rows' leases simply expire or were released)."""
        await self._run((self.queries.RELEASE_ACCOUNT, {"user_id": user_id, "owner": self.owner}))

    async def claim_due_events(
        self, user_id: UUID, limit: int, *, exclude: Iterable[int] = ()
    ) -> list[Event]:
        """Lease up to `limit` due rows, leaving out `exclude` (this worker's passes hold them)."""
        rows = await self._lease(
            self.queries.CLAIM_DUE_EVENTS,
            as_dicts=False,
            user_id=user_id,
            limit=limit,
            exclude=Int8Array(exclude),
        )
        return [Event(*r) for r in rows]  # RETURNING lists Event's fields in order

    async def expand_bulk(self, user_id: UUID, chunk: int) -> int:
        """Turn the account's oldest import slice (at most `chunk` ids) into queue rows; an
        import larger than that is first split into slices of `chunk`, once."""
        params = {"user_id": user_id, "chunk": chunk}
        async with self._connection() as conn, conn.transaction():
            await conn.execute(self.queries.SPLIT_OLDEST_BULK_ROW, params)
            return (await conn.execute(self.queries.EXPAND_OLDEST_BULK_ROW, params)).rowcount

    async def load_facts(self, account: Account, events: Sequence[Event]) -> Facts:
        """Everything the planner needs for these claimed rows: the contacts as they are now,
        every contact sharing one of their addresses (now or before), links and ledger."""
        ids = UuidArray([e.contact_id for e in events])
        params: dict[str, Any] = {"user_id": account.user_id, "audience_id": account.audience_id}
        # Rows as tuples, read by position in each statement's column order: no dict per row.
        async with self._connection() as conn, conn.cursor() as cur:
            await cur.execute(self.queries.CONTACTS_BY_ID, {**params, "ids": ids})
            changed = [contact_of(*r) for r in await cur.fetchall()]
            by_id = {c.id: c for c in changed}
            await cur.execute(self.queries.LINKS_BY_CONTACT, {**params, "ids": ids})
            # contact_id, email_hash, maybe_hashes, changed_at
            link_rows = await cur.fetchall()
            links = {r[0]: r[1] for r in link_rows if r[1]}
            maybe_links = {r[0]: tuple(r[2]) for r in link_rows if r[2]}
            _add_recorded_addresses(maybe_links, links, events)
            linked = set(links.values()) | {h for hs in maybe_links.values() for h in hs}
            ledger = await self._ledger(cur, params, linked)

            # Every address these contacts have now or had before: their members' contacts.
            emails = {normalize_email(c.email) for c in changed}
            emails |= {m.email for m in ledger.values()}
            emails |= {normalize_email(e.email) for e in events if e.email}
            lowered = sorted({e.lower() for e in emails if e})
            await cur.execute(
                self.queries.CONTACTS_BY_EMAIL,
                {**params, "emails": TextArray(lowered), "known": UuidArray(by_id)},
            )
            # id, known, email, merge_fields, tags; known: one of `changed`, read by id above.
            rows = await cur.fetchall()
            sharing = [by_id[r[0]] if r[1] else contact_of(r[0], *r[2:]) for r in rows]
            others = UuidArray([r[0] for r in rows if not r[1]])

            hashes = {subscriber_hash(e) for e in lowered} | linked
            ledger.update(await self._ledger(cur, params, hashes - set(ledger)))

            synced: list[tuple[UUID, datetime]] = []
            pending: list[tuple[UUID, datetime]] = [(e.contact_id, e.changed_at) for e in events]
            queued: set[UUID] = set()
            if others:
                # Recency as Sync Now and verify read it: synced, or changed since (queued).
                await cur.execute(self.queries.LINKS_BY_CONTACT, {**params, "ids": others})
                other_links = await cur.fetchall()
                # A link without a member is only a maybe-link written ahead for a contact
                # never synced (another pass used its fields): not a sync, so no recency.
                synced = [(r[0], r[3]) for r in other_links if r[1]]
                await cur.execute(self.queries.PENDING_BY_CONTACT, {**params, "ids": others})
                waiting = [(r[0], r[1]) for r in await cur.fetchall()]
                pending += waiting
                # Still to be handled by a pass of their own: a change queued, or never synced
                # (no link: inside an import not yet turned into queue rows, or refused).
                synced_as = {r[0] for r in other_links if r[1]}
                queued = {c for c, _ in waiting} | {c for c in others if c not in synced_as}
        recency = contact_recency(synced, pending)
        return Facts(
            changed=changed,
            # The ids are distinct: all of them read means none deleted (no lookup per id).
            deleted=[] if len(by_id) == len(ids) else [i for i in ids if i not in by_id],
            sharing=sharing,
            links=links,
            maybe_links=maybe_links,
            ledger=ledger,
            recency=recency,
            queued=frozenset(queued),
        )

    async def _ledger(
        self, cur: Any, params: dict[str, Any], hashes: set[str]
    ) -> dict[str, LedgerMember]:
        if not hashes:
            return {}
        await cur.execute(
            self.queries.LEDGER_BY_HASH, {**params, "hashes": TextArray(sorted(hashes))}
        )
        return {r[0]: ledger_of(*r) for r in await cur.fetchall()}  # LEDGER_COLUMNS' order

    async def record(self, account: Account, out: Outcomes) -> list[tuple[int, int]] | None:
        """Write a batch's outcomes in one transaction. Returns (event id, attempts) of retries,
        or None when this worker no longer holds the account (then nothing is written)."""
        params: dict[str, Any] = {"user_id": account.user_id, "audience_id": account.audience_id}
        retried: list[tuple[int, int]] = []
        async with self._connection() as conn, conn.transaction():
            holds = await conn.execute(
                self.queries.HOLDS_ACCOUNT, {"user_id": account.user_id, "owner": self.owner}
            )
            if await holds.fetchone() is None:
                return None
            await self._write_ledger(conn, params, out)
            if out.links:
                await conn.execute(
                    self.queries.UPSERT_LINKS,
                    {
                        **params,
                        "ids": UuidArray([c for c, _, _ in out.links]),
                        "hashes": TextArray([h for _, h, _ in out.links]),
                        "changed": [t for _, _, t in out.links],
                    },
                )
            if out.unlinks:
                await conn.execute(self.queries.DELETE_LINKS, {**params, "ids": out.unlinks})
            if out.cleared_rejections:
                await conn.execute(
                    self.queries.CLEAR_REJECTIONS,
                    {**params, "ids": UuidArray(out.cleared_rejections)},
                )
            if out.rejections:
                await conn.execute(
                    self.queries.UPSERT_REJECTIONS, {**params, **_rejection_params(out.rejections)}
                )
            if out.completed:
                await conn.execute(
                    self.queries.COMPLETE_EVENTS,
                    {
                        "ids": Int8Array([e.id for e in out.completed]),
                        "versions": Int8Array([e.version for e in out.completed]),
                    },
                )
            if out.retried:
                cur = await conn.execute(
                    self.queries.RETRY_EVENTS,
                    {
                        "ids": Int8Array([e.id for e, _, _ in out.retried]),
                        "delays": [d for _, d, _ in out.retried],
                        "errors": TextArray([m[:1000] for _, _, m in out.retried]),
                    },
                )
                retried = [(r[0], r[1]) for r in await cur.fetchall()]
            if out.deferred:
                await conn.execute(
                    self.queries.DEFER_EVENTS,
                    {"ids": Int8Array([e.id for e in out.deferred]), "delay": out.defer_seconds},
                )
            if out.postponed:
                await conn.execute(
                    self.queries.DEFER_EVENTS,
                    {
                        "ids": Int8Array([e.id for e in out.postponed]),
                        "delay": out.postpone_seconds,
                    },
                )
            leftover = Int8Array([e.id for e in [*out.completed, *out.released]])
            if leftover:
                # Completed rows that a newer change kept, and rows given back untouched.
                await conn.execute(
                    self.queries.RELEASE_EVENTS, {"ids": leftover, "owner": self.owner}
                )
        return retried

    async def write_ahead(
        self, account: Account, entries: list[LedgerMember], links: dict[UUID, str]
    ) -> None:
        """Record what the coming calls may do, before they go out (one transaction)."""
        if not entries and not links:
            return
        params: dict[str, Any] = {"user_id": account.user_id, "audience_id": account.audience_id}
        async with self._connection() as conn, conn.transaction():
            await self._write_ledger(conn, params, Outcomes(ledger_upserts=entries))
            if links:
                await conn.execute(
                    self.queries.WRITE_AHEAD_LINKS,
                    {**params, "ids": UuidArray(links), "hashes": TextArray(links.values())},
                )

    async def _write_ledger(
        self, conn: AsyncConnection[Any], params: dict[str, Any], out: Outcomes
    ) -> None:
        if out.ledger_deletes:
            await conn.execute(self.queries.DELETE_LEDGER, {**params, "hashes": out.ledger_deletes})
        if out.ledger_upserts:
            await conn.execute(
                self.queries.UPSERT_LEDGER, {**params, **ledger_params(out.ledger_upserts)}
            )

    # --- connection health (see mcsync.worker.health) ----------------------------------------

    async def _run(self, *statements: tuple[str, dict[str, Any]]) -> None:
        async with self._connection() as conn:
            for statement, params in statements:
                await conn.execute(statement, params)

    async def _changed(
        self, statement: str, params: dict[str, Any], *, event: dict[str, Any] | None = None
    ) -> bool:
        """Run one conditional UPDATE; True if it changed a row (this caller made the change).
        `event` (health_event_params) is recorded in the same transaction when it did, so a
        change is never left without its history entry (the account's other passes, finding it
        made, record nothing); the entry stays best effort (a savepoint): a failure to write it
        is logged and never undoes the change."""
        async with self._connection() as conn, conn.transaction():
            changed = (await conn.execute(statement, params)).rowcount > 0
            if changed and event is not None:
                try:
                    async with conn.transaction():
                        await conn.execute(self.queries.RECORD_HEALTH_EVENT, event)
                except psycopg.Error as exc:
                    _log.warning(
                        "health_event_not_recorded",
                        user_id=str(event["user_id"]),
                        kind=event["kind"],
                        error=str(exc)[:200],
                    )
            return changed

    async def hold_back(self, user_id: UUID, delay: float) -> None:
        """Count a throttle, and make every row of the account wait `delay` seconds."""
        uid = {"user_id": user_id}
        await self._run(
            (self.queries.COUNT_THROTTLED, uid),
            (self.queries.DEFER_USER_EVENTS, {**uid, "delay": delay, "owner": self.owner}),
        )

    async def count_throttled(self, user_id: UUID) -> None:
        await self._run((self.queries.COUNT_THROTTLED, {"user_id": user_id}))

    async def record_failure(self, user_id: UUID, error: str) -> None:
        """One more failure in a row toward pausing the connection."""
        await self._run((self.queries.RECORD_FAILURE, {"user_id": user_id, "error": error[:500]}))

    async def pause_connection(
        self, user_id: UUID, notice: str, error: str, *, probe_in: float
    ) -> bool:
        """Pause an active connection, with its health event. False if it was not active
        (another pass paused it)."""
        params = {"user_id": user_id, "notice": notice, "error": error[:500], "probe_in": probe_in}
        event = health_event_params(user_id, "paused", detail=error)
        return await self._changed(self.queries.PAUSE_CONNECTION, params, event=event)

    async def reschedule_probe(self, user_id: UUID, probe_in: float, error: str) -> None:
        params = {"user_id": user_id, "probe_in": probe_in, "error": error[:500]}
        await self._run((self.queries.RESCHEDULE_PROBE, params))

    async def resume_connection(self, user_id: UUID) -> None:
        """Active again: every waiting row is due now, and the workers are woken."""
        uid = {"user_id": user_id}
        await self._run(
            (self.queries.RESUME_CONNECTION, uid),
            (self.queries.MAKE_USER_EVENTS_DUE, uid),
            (self.queries.NOTIFY, {}),
        )

    async def mark_connection_error(
        self,
        user_id: UUID,
        notice: str,
        error: str,
        *,
        reason: str,
        event_detail: str | None = None,
    ) -> bool:
        """The token is revoked or the account unusable: stop until the user reconnects. False
        if the connection was already in error for this reason (nothing changed). With
        `event_detail`, the health event ("error") is recorded with the change."""
        params = {"user_id": user_id, "notice": notice, "error": error[:500], "reason": reason}
        event = (
            None
            if event_detail is None
            else health_event_params(user_id, "error", detail=event_detail)
        )
        return await self._changed(self.queries.MARK_CONNECTION_ERROR, params, event=event)

    async def pause_unusable(
        self, user_id: UUID, notice: str, error: str, *, reason: str, probe_in: float
    ) -> None:
        """Unusable until the operator fixes something: paused, probed after `probe_in`, one
        failure more (so the next probe waits longer)."""
        params = {
            "user_id": user_id,
            "notice": notice,
            "error": error[:500],
            "reason": reason,
            "probe_in": probe_in,
        }
        await self._run((self.queries.PAUSE_UNUSABLE, params))

    async def set_double_optin(self, account: Account, double_optin: bool) -> None:
        """Store the audience's double opt-in setting as Mailchimp now has it."""
        params = {"user_id": account.user_id, "audience_id": account.audience_id}
        await self._run((self.queries.SET_DOUBLE_OPTIN, {**params, "double_optin": double_optin}))

    async def mark_synced(self, user_id: UUID) -> None:
        await self._run((self.queries.MARK_SYNCED, {"user_id": user_id}))

    async def record_health_event(self, user_id: UUID, kind: str, detail: str | None) -> None:
        """Add to the connection's short health history (the operator's page shows it).

        Best effort, after the transition itself was recorded: the history is for reading, so
        a failure to write it is logged and never stops a pause or a resume."""
        params = health_event_params(user_id, kind, detail=detail)
        try:
            await self._run((self.queries.RECORD_HEALTH_EVENT, params))
        except psycopg.Error as exc:
            _log.warning(
                "health_event_not_recorded", user_id=str(user_id), kind=kind, error=str(exc)[:200]
            )
