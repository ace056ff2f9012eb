"""The real worker against the real emulator, with only the database modelled in memory.

Model-based tests of the mirror (tests/model/test_mirror.py) drive random contact histories through:

- Mailchimp: the project's emulator (`mcsync.emulator.app.create_app`), in-process through
  `httpx.ASGITransport`, reached by the real `MailchimpClient`. Mailchimp-side actions (a
  subscriber unsubscribing, a marketer archiving or tagging by hand, members arriving from
  elsewhere) go through the emulator's admin routes on the same transport. 5xx/429/504 faults
  are the emulator's own seeded faults (`POST /_emulator/faults`).
- The worker: the real `Worker.serve_due` and `AccountWorker.serve` (claims, concurrent
  passes, `plan_for`, `write_ahead_ledger` + maybe links, `MemberApplier`/`apply_plans`/
  `AccountGate`, `collect_outcomes`, `ConnectionHealth`: throttling, pauses, probes), built
  from the same parts as in production (`ClientFactory`, `Backoff`, `AccountSettings`), and
  the real `WorkerStore` on top of...
- the database: `MemoryDatabase`, which executes the statements of `mcsync.queries` that the
  worker sends (each handler documents the SQL it models) and the contacts triggers (those
  `mcsync migrate` generates from the built-in source mapping, mcsync.source). It is the only
  hand-written model here. A statement it does not model raises `NotImplementedError`, and
  tests/model/test_mirror.py fingerprints the SQL of every statement it models, so a change in the
  worker's SQL fails loudly instead of silently diverging. Its triggers are checked against
  the real ones: tests/model/test_model_conformance.py runs the same scripts of contact changes
  against the model and against the generated triggers on a real Postgres, and compares the
  queues.

Lost answers (a call that takes effect in Mailchimp whose answer never arrives): the emulator's
`timeout` fault holds a request and answers 504 *without* applying it, so it cannot produce
one. `MailchimpSide` (the httpx transport in front of the emulator) does it instead: with a
seeded probability it lets the request reach the emulator, reads the answer, and raises
`httpx.ReadTimeout` in its place. That is exactly what a lost answer is on the wire, and the
least invasive place for it: neither the emulator nor the worker nor the model changes, and the
real `MailchimpClient` turns it into the `TransientError("Timeout")` the worker sees in
production. A worker dying after its calls and before recording them (every answer of a pass
lost at once) is `MemoryDatabase.crash_rate`: the record transaction fails and the dead worker's
leases expire before a new worker carries on.

`MailchimpHistory` watches every API request on the wire (with the target member's state just
before it, read from the emulator) so the tests can say who did what: which members mcsync
touched, owns, tagged, archived, and whether it ever asked to raise a status.
"""

from __future__ import annotations

import asyncio
import copy
import json
import random
import re
from collections.abc import Awaitable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast
from uuid import UUID

import httpx
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from mcsync.crypto import TokenCipher
from mcsync.emulator.app import create_app
from mcsync.emulator.runtime import Emulator
from mcsync.emulator.state import Audience as EmulatedAudience
from mcsync.emulator.state import Member as EmulatedMember
from mcsync.mailchimp.client import ClientFactory
from mcsync.mirror import (
    ASCII_SPACES,
    Contact,
    LedgerMember,
    Plan,
    normalize_email,
    subscriber_hash,
)
from mcsync.queries import statements
from mcsync.worker.account import AccountSettings, AccountWorker, plan_for
from mcsync.worker.backoff import Backoff
from mcsync.worker.runner import Worker
from mcsync.worker.store import Account, Event, WorkerStore

COMPLIANCE = ("unsubscribed", "cleaned")
ACTIVE = ("subscribed", "pending")
T0 = datetime(2024, 1, 1, tzinfo=UTC)
BASE_URL = "http://mailchimp.test"
AUDIENCE_ID = "list1"
TOKEN = "model-token"
USER_ID = UUID(int=0xC0AC4)
LEASE_SECONDS = 60.0
# A fixed Fernet key: the token is encrypted at rest as in production, without a key per world.
CIPHER = TokenCipher(["H0t3Qs6dU8p2i0h7zqQ9rR0Hk2a8u9vN1kS4yQ7s6xM="])

T = TypeVar("T")

# Statement text, as the worker's store runs it -> its name in mcsync.queries.
STATEMENT_NAMES: dict[str, str] = {value: name for name, value in statements().named.items()}



def person(
    contact_id: UUID | int,
    email: str | None,
    first: str | None = None,
    last: str | None = None,
    phone: str | None = None,
    tags: Sequence[str] = (),
) -> Contact:
    """A contact of the default mapping's table (first_name, last_name, phone as FNAME, LNAME,
    PHONE), the way `contact_from_row` reads it. An int id n stands for UUID(int=n)."""
    fields = (("FNAME", first), ("LNAME", last), ("PHONE", phone))
    key = UUID(int=contact_id) if isinstance(contact_id, int) else contact_id
    return Contact(key, email, fields, tuple(tags))


def contact_columns(c: Contact) -> dict[str, Any]:
    """The default mapping's columns of `contacts` for a contact made by `person`."""
    return {
        "email": c.email,
        "first_name": c.field("FNAME"),
        "last_name": c.field("LNAME"),
        "phone": c.field("PHONE"),
        "tags": list(c.tags),
    }

class WorkerCrash(Exception):
    """The worker process died (or lost its database) after its calls, before recording."""


# --- the database ------------------------------------------------------------------------------


@dataclass
class QueueRow:
    """A mcsync.mailchimp_sync_queue row (one user)."""

    id: int
    contact_id: UUID
    op: str
    email: str | None
    version: int
    enqueued_at: datetime
    changed_at: datetime
    next_retry_at: datetime
    attempts: int = 0
    last_error: str | None = None
    locked_by: str | None = None
    locked_until: datetime | None = None


@dataclass
class LinkRow:
    """A mcsync.mailchimp_contact_links row."""

    contact_id: UUID
    audience_id: str
    email_hash: str | None
    maybe_hashes: list[str]
    changed_at: datetime


@dataclass
class ConnectionRow:
    """The user's mcsync.mailchimp_connections row (the columns the worker reads or writes)."""

    user_id: UUID
    access_token_encrypted: str
    dc: str
    api_endpoint: str
    audience_id: str | None
    double_optin: bool
    sync_status: str = "active"
    status_reason: str | None = None
    notice: str | None = None
    consecutive_failures: int = 0
    throttled_count: int = 0
    last_error: str | None = None
    next_probe_at: datetime | None = None
    lease_owner: str | None = None
    lease_until: datetime | None = None
    last_sync_at: datetime | None = None


def email_key(email: str | None) -> str | None:
    """sql/002's mcsync.mcsync_email_key: lower(btrim(email, E' \\t\\n\\r\\f\\x0B'))."""
    return None if email is None else email.strip(ASCII_SPACES).lower()


def _uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


def _text_array(value: Any) -> list[str]:
    """A text[] column as a list (NULL and '{}' alike)."""
    return [str(t) for t in (value or [])]


class MemoryDatabase:
    """One user's rows of the mcsync tables, the app's `contacts`, and a clock.

    `run(statement, params)` executes one statement of `mcsync.queries` (dispatched by its
    name: `sql_<NAME>`), with Postgres' semantics as far as one user and one audience need.
    `now` is the transaction clock: it moves only when the model moves it."""

    def __init__(self, connection: ConnectionRow) -> None:
        self.now = T0
        self.connection = connection
        self.contacts: dict[UUID, Contact] = {}
        self.queue: dict[int, QueueRow] = {}
        self.ledger: dict[str, LedgerMember] = {}
        self.links: dict[UUID, LinkRow] = {}
        self.rejections: dict[UUID, dict[str, Any]] = {}
        self.health_events: list[dict[str, Any]] = []
        self.bulk: list[
            tuple[int, list[UUID]]
        ] = []  # mcsync.mailchimp_sync_bulk; see insert_contact
        self._ids = 0
        self.work_writes = 0  # statements that changed queue, ledger, links or health
        self.crash_rate = 0.0
        self.crash_rng = random.Random(0)
        self.crashes = 0
        self.executed: set[str] = set()  # names of the statements run

    # --- the app and the contacts triggers (sql/002) -------------------------------------------

    def _enqueue(self, contact_id: UUID, op: str, email: str | None, *, keep_email: bool) -> None:
        """INSERT INTO mailchimp_sync_queue ... ON CONFLICT (user_id, contact_id) DO UPDATE SET
        op = <op>, version = q.version + 1, changed_at = now()[, email = coalesce(q.email,
        excluded.email)]. next_retry_at and attempts are left alone on conflict."""
        row = next((r for r in self.queue.values() if r.contact_id == contact_id), None)
        if row is None:
            self._ids += 1
            self.queue[self._ids] = QueueRow(
                self._ids, contact_id, op, email, 1, self.now, self.now, self.now
            )
            return
        row.op = op
        row.version += 1
        row.changed_at = self.now
        if not keep_email:
            row.email = row.email if row.email is not None else email

    def insert_contact(self, contact: Contact) -> None:
        """mcsync_enqueue_inserted (one row: below the 1000-row import threshold, so never
        mcsync.mailchimp_sync_bulk): queue 'upsert' with email NULL; on conflict the email stays."""
        assert contact.id not in self.contacts
        self.contacts[contact.id] = contact
        self._enqueue(contact.id, "upsert", None, keep_email=True)

    def update_contact(self, contact: Contact) -> None:
        """mcsync_enqueue_updated: only when a synced column changed; email = the old one."""
        old = self.contacts[contact.id]
        self.contacts[contact.id] = contact
        if old != contact:
            self._enqueue(contact.id, "upsert", old.email, keep_email=False)

    def delete_contact(self, contact_id: UUID) -> None:
        """mcsync_enqueue_deleted: queue 'delete' with the old email."""
        old = self.contacts.pop(contact_id)
        self._enqueue(contact_id, "delete", old.email, keep_email=False)

    # --- executing statements ------------------------------------------------------------------

    def run(self, statement: str, params: dict[str, Any]) -> list[dict[str, Any]] | int:
        """Rows (a SELECT or RETURNING) or the number of rows changed."""
        name = STATEMENT_NAMES.get(statement)
        handler = getattr(self, f"sql_{name}", None) if name else None
        if handler is None:
            raise NotImplementedError(
                f"MemoryDatabase does not model {name or 'this statement'}: "
                f"{' '.join(statement.split())[:200]}"
            )
        assert name is not None
        self.executed.add(name)
        if "user_id" in params:
            assert params["user_id"] == self.connection.user_id, "one user only"
        if "audience_id" in params:
            assert params["audience_id"] == self.connection.audience_id, "one audience only"
        return cast("list[dict[str, Any]] | int", handler(params))

    def snapshot(self) -> Any:
        return copy.deepcopy(
            (self.connection, self.queue, self.ledger, self.links, self.rejections)
        )

    def restore(self, saved: Any) -> None:
        self.connection, self.queue, self.ledger, self.links, self.rejections = saved

    def _lease_free(self, until: datetime | None) -> bool:
        return until is None or until < self.now

    # claiming -----------------------------------------------------------------------------------

    def sql_CLAIM_ACCOUNTS(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        """Lease the account when it has a due queue row (or a bulk row) and is active, or is
        paused with a due probe; no live lease of another owner; not in `busy`."""
        c = self.connection
        if c.audience_id is None or c.user_id in p["busy"] or p["limit"] < 1:
            return []
        if not (self._lease_free(c.lease_until) or c.lease_owner == p["owner"]):
            return []
        due = (
            c.sync_status == "active"
            and (any(q.next_retry_at <= self.now for q in self.queue.values()) or self.bulk)
        ) or (
            c.sync_status == "paused"
            and c.next_probe_at is not None
            and c.next_probe_at <= self.now
        )
        if not due:
            return []
        c.lease_owner = p["owner"]
        c.lease_until = self.now + timedelta(seconds=p["lease_seconds"])
        return [{**asdict(c), "has_bulk": bool(self.bulk)}]

    def sql_RENEW_ACCOUNT_LEASE(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        """While the owner holds the account: extend its lease and the owner's row locks
        (locked_until NOT NULL). SELECT whether it holds the account."""
        until = self.now + timedelta(seconds=p["lease_seconds"])
        holds = self.connection.lease_owner == p["owner"]
        if holds:
            self.connection.lease_until = until
            for q in self.queue.values():
                if q.locked_by == p["owner"] and q.locked_until is not None:
                    q.locked_until = until
        return [{"holds": holds}]

    def sql_HOLDS_ACCOUNT(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        """SELECT 1 ... WHERE lease_owner = owner FOR SHARE."""
        return [{"?column?": 1}] if self.connection.lease_owner == p["owner"] else []

    def sql_RELEASE_ACCOUNT(self, p: dict[str, Any]) -> int:
        if self.connection.lease_owner != p["owner"]:
            return 0
        self.connection.lease_owner = self.connection.lease_until = None
        return 1

    def sql_CLAIM_DUE_EVENTS(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        """Lock up to `limit` due rows (ORDER BY next_retry_at, id) not locked by another live
        owner and not in `exclude`; RETURNING id, contact_id, op, email, version, attempts,
        changed_at."""
        due = sorted(
            (
                q
                for q in self.queue.values()
                if q.next_retry_at <= self.now
                and (self._lease_free(q.locked_until) or q.locked_by == p["owner"])
                and q.id not in p["exclude"]
            ),
            key=lambda q: (q.next_retry_at, q.id),
        )[: p["limit"]]
        for q in due:
            q.locked_by = p["owner"]
            q.locked_until = self.now + timedelta(seconds=p["lease_seconds"])
        return [
            {
                "id": q.id,
                "contact_id": q.contact_id,
                "op": q.op,
                "email": q.email,
                "version": q.version,
                "attempts": q.attempts,
                "changed_at": q.changed_at,
            }
            for q in due
        ]

    # reading facts ------------------------------------------------------------------------------

    @staticmethod
    def _contact_row(c: Contact) -> dict[str, Any]:
        """A row of `mcsync.source_contacts` (the view the default mapping generates)."""
        return {
            "id": c.id,
            "email": c.email,
            "merge_fields": dict(c.merge_fields),
            "tags": list(c.tags),
        }

    def sql_CONTACTS_BY_ID(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        ids = set(p["ids"])
        return [self._contact_row(c) for c in self.contacts.values() if c.id in ids]

    def sql_CONTACTS_BY_EMAIL(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        """mcsync.mcsync_email_key(email) is one of `emails` (a NULL email matches nothing);
        a contact among `known` comes back as its id and known = true, the rest as NULL. In the
        statement's column order (the worker reads the rows by position)."""
        emails, known = set(p["emails"]), set(p["known"])
        return [
            {"id": c.id, "known": True, "email": None, "merge_fields": None, "tags": None}
            if c.id in known
            else {"id": c.id, "known": False, **self._contact_row(c)}
            for c in self.contacts.values()
            if email_key(c.email) in emails
        ]

    def sql_LINKS_BY_CONTACT(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        ids = set(p["ids"])
        return [
            {
                "contact_id": r.contact_id,
                "email_hash": r.email_hash,
                "maybe_hashes": list(r.maybe_hashes),
                "changed_at": r.changed_at,
            }
            for r in self.links.values()
            if r.contact_id in ids
        ]

    def sql_PENDING_BY_CONTACT(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        ids = set(p["ids"])
        return [
            {"contact_id": r.contact_id, "changed_at": r.changed_at}
            for r in self.queue.values()
            if r.contact_id in ids
        ]

    def sql_LEDGER_BY_HASH(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {
                "email_hash": m.email_hash,
                "email": m.email,
                "fields_hash": m.fields_hash,
                "tags": list(m.tags),
                "maybe_tags": list(m.maybe_tags),
                "status": m.status,
                "archived": m.archived,
                "archive_status": m.archive_status,
                "pending_rename_from": m.pending_rename_from,
            }
            for h in p["hashes"]
            if (m := self.ledger.get(h)) is not None
        ]

    # recording ----------------------------------------------------------------------------------

    def sql_UPSERT_LEDGER(self, p: dict[str, Any]) -> int:
        """INSERT ... FROM unnest(one typed array per column) ON CONFLICT DO UPDATE: everything
        from the new row except status = coalesce(excluded.status, m.status). A member's tags
        are tags[tags_from:tags_to] (1-based, inclusive), its maybe_tags likewise."""
        keys = p["hashes"]
        assert len(keys) == len(set(keys)), "ON CONFLICT DO UPDATE cannot affect a row twice"
        columns = zip(
            keys, p["emails"], p["fields_hashes"], p["tags_from"], p["tags_to"],
            p["maybe_from"], p["maybe_to"], p["statuses"], p["archived"],
            p["archive_statuses"], p["renames"], strict=True,
        )  # fmt: skip
        for h, email, fields, t0, t1, m0, m1, status, archived, archive_status, rename in columns:
            old = self.ledger.get(h)
            if status is None and old is not None:
                status = old.status
            self.ledger[h] = LedgerMember(
                email_hash=h,
                email=email,
                fields_hash=fields,
                tags=tuple(_text_array(p["tags"][t0 - 1 : t1])),
                maybe_tags=tuple(_text_array(p["maybe_tags"][m0 - 1 : m1])),
                status=status,
                archived=bool(archived),
                archive_status=archive_status,
                pending_rename_from=rename,
            )
        self.work_writes += 1
        return len(keys)

    def sql_MARK_ARCHIVING(self, p: dict[str, Any]) -> int:
        """UPDATE mcsync.mailchimp_members SET archive_status = status (only an existing row)."""
        old = self.ledger.get(p["email_hash"])
        if old is None:
            return 0
        self.ledger[p["email_hash"]] = replace(old, archive_status=p["status"])
        self.work_writes += 1
        return 1

    def sql_DELETE_LEDGER(self, p: dict[str, Any]) -> int:
        gone = [h for h in p["hashes"] if self.ledger.pop(h, None) is not None]
        self.work_writes += 1
        return len(gone)

    def sql_UPSERT_LINKS(self, p: dict[str, Any]) -> int:
        """ON CONFLICT (user_id, contact_id) DO UPDATE SET audience_id, email_hash,
        maybe_hashes = NULL (nothing in doubt), changed_at = excluded.changed_at."""
        ids = [_uuid(i) for i in p["ids"]]
        assert len(ids) == len(set(ids)), "ON CONFLICT DO UPDATE cannot affect a row twice"
        for cid, h, changed in zip(ids, p["hashes"], p["changed"], strict=True):
            assert isinstance(changed, datetime) and changed.tzinfo is not None
            self.links[cid] = LinkRow(cid, p["audience_id"], h, [], changed)
        self.work_writes += 1
        return len(ids)

    def sql_WRITE_AHEAD_LINKS(self, p: dict[str, Any]) -> int:
        """A new row gets email_hash NULL, maybe_hashes {hash}, changed_at DEFAULT now();
        an existing one appends the hash to maybe_hashes unless it is there already."""
        ids = [_uuid(i) for i in p["ids"]]
        assert len(ids) == len(set(ids)), "ON CONFLICT DO UPDATE cannot affect a row twice"
        for cid, h in zip(ids, p["hashes"], strict=True):
            row = self.links.get(cid)
            if row is None:
                self.links[cid] = LinkRow(cid, p["audience_id"], None, [h], self.now)
            elif h not in row.maybe_hashes:
                row.maybe_hashes.append(h)
        self.work_writes += 1
        return len(ids)

    def _delete_by_contact(self, table: dict[UUID, Any], ids: Sequence[Any]) -> int:
        """DELETE ... WHERE user_id = %(user_id)s AND contact_id = ANY(%(ids)s)."""
        gone = [i for i in ids if table.pop(_uuid(i), None) is not None]
        self.work_writes += 1
        return len(gone)

    def sql_DELETE_LINKS(self, p: dict[str, Any]) -> int:
        return self._delete_by_contact(self.links, p["ids"])

    def sql_UPSERT_REJECTIONS(self, p: dict[str, Any]) -> int:
        columns = ("contact_id", "email", "severity", "reason", "field", "detail")
        params = ("ids", "emails", "severities", "reasons", "fields", "details")
        arrays = (p[n] for n in params)
        rows = [dict(zip(columns, values, strict=True)) for values in zip(*arrays, strict=True)]
        for r in rows:
            self.rejections[_uuid(r["contact_id"])] = r
        self.work_writes += 1
        return len(rows)

    def sql_CLEAR_REJECTIONS(self, p: dict[str, Any]) -> int:
        return self._delete_by_contact(self.rejections, p["ids"])

    def sql_COMPLETE_EVENTS(self, p: dict[str, Any]) -> int:
        """Delete a row only if its version is still the one processed."""
        done = [
            i
            for i, v in zip(p["ids"], p["versions"], strict=True)
            if i in self.queue and self.queue[i].version == v
        ]
        for i in done:
            del self.queue[i]
        self.work_writes += 1
        return len(done)

    def sql_RELEASE_EVENTS(self, p: dict[str, Any]) -> int:
        rows = [q for i in p["ids"] if (q := self.queue.get(i)) is not None]
        rows = [q for q in rows if q.locked_by == p["owner"]]
        for q in rows:
            q.locked_by = q.locked_until = None
        self.work_writes += 1
        return len(rows)

    def sql_RETRY_EVENTS(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        """attempts + 1, next_retry_at = now() + delay, last_error, unlocked; RETURNING id,
        attempts."""
        out = []
        for i, delay, error in zip(p["ids"], p["delays"], p["errors"], strict=True):
            q = self.queue.get(i)
            if q is None:
                continue
            q.attempts += 1
            q.next_retry_at = self.now + timedelta(seconds=delay)
            q.last_error = error
            q.locked_by = q.locked_until = None
            out.append({"id": q.id, "attempts": q.attempts})
        self.work_writes += 1
        return out

    def sql_DEFER_EVENTS(self, p: dict[str, Any]) -> int:
        rows = [q for i in p["ids"] if (q := self.queue.get(i)) is not None]
        for q in rows:
            q.next_retry_at = self.now + timedelta(seconds=p["delay"])
            q.locked_by = q.locked_until = None
        self.work_writes += 1
        return len(rows)

    def sql_DEFER_USER_EVENTS(self, p: dict[str, Any]) -> int:
        """Every row due before now + delay and not locked by another live owner waits."""
        until = self.now + timedelta(seconds=p["delay"])
        rows = [
            q
            for q in self.queue.values()
            if q.next_retry_at < until
            and (self._lease_free(q.locked_until) or q.locked_by == p["owner"])
        ]
        for q in rows:
            q.next_retry_at = until
        self.work_writes += 1
        return len(rows)

    # connection health ----------------------------------------------------------------------

    def sql_COUNT_THROTTLED(self, p: dict[str, Any]) -> int:
        self.connection.throttled_count += 1
        return 1

    def sql_RECORD_FAILURE(self, p: dict[str, Any]) -> int:
        self.connection.consecutive_failures += 1
        self.connection.last_error = p["error"]
        self.work_writes += 1
        return 1

    def sql_MARK_SYNCED(self, p: dict[str, Any]) -> int:
        """At most once a second, unless failures need clearing (the row is never locked by
        another pass here, so SKIP LOCKED never skips)."""
        c = self.connection
        if (
            c.consecutive_failures == 0
            and c.last_sync_at is not None
            and c.last_sync_at >= self.now - timedelta(seconds=1)
        ):
            return 0
        self.connection.last_sync_at = self.now
        self.connection.consecutive_failures = 0
        return 1

    def sql_PAUSE_CONNECTION(self, p: dict[str, Any]) -> int:
        """Only an active connection pauses; the probe is due after probe_in."""
        c = self.connection
        if c.sync_status != "active":
            return 0
        c.sync_status, c.notice, c.last_error = "paused", p["notice"], p["error"]
        c.status_reason = "failures"
        c.next_probe_at = self.now + timedelta(seconds=p["probe_in"])
        self.work_writes += 1
        return 1

    def sql_RESCHEDULE_PROBE(self, p: dict[str, Any]) -> int:
        self.connection.next_probe_at = self.now + timedelta(seconds=p["probe_in"])
        self.connection.last_error = p["error"]
        self.work_writes += 1
        return 1

    def sql_RESUME_CONNECTION(self, p: dict[str, Any]) -> int:
        c = self.connection
        c.sync_status, c.notice, c.next_probe_at, c.consecutive_failures = "active", None, None, 0
        c.status_reason, c.last_error = None, None
        self.work_writes += 1
        return 1

    def sql_MAKE_USER_EVENTS_DUE(self, p: dict[str, Any]) -> int:
        for q in self.queue.values():
            q.next_retry_at, q.attempts = self.now, 0
        self.work_writes += 1
        return len(self.queue)

    def sql_MARK_CONNECTION_ERROR(self, p: dict[str, Any]) -> int:
        """Only a change of state (not already in error for this reason)."""
        c = self.connection
        if (c.sync_status, c.status_reason) == ("error", p["reason"]):
            return 0
        c.sync_status, c.notice, c.last_error = "error", p["notice"], p["error"]
        c.status_reason = p["reason"]
        self.work_writes += 1
        return 1

    def sql_NOTIFY(self, p: dict[str, Any]) -> int:
        return 0

    def sql_RECORD_HEALTH_EVENT(self, p: dict[str, Any]) -> int:
        """The short health history (sql/008): a repeat of the latest event (same kind and
        actor) bumps its count; at most `keep` events. Nothing the mirror reads."""
        latest = self.health_events[-1] if self.health_events else None
        if latest and (latest["kind"], latest["actor"]) == (p["kind"], p["actor"]):
            latest["repeats"] += 1
            latest["detail"] = p["detail"]
        else:
            self.health_events.append({**p, "repeats": 1})
        dropped = max(0, len(self.health_events) - p["keep"])
        del self.health_events[:dropped]
        return dropped

    # the clock ----------------------------------------------------------------------------------

    def next_wakeup(self) -> datetime | None:
        """The next time something becomes due: a retry, an expiring lock or lease, a probe."""
        times = [q.next_retry_at for q in self.queue.values() if q.next_retry_at > self.now]
        times += [q.locked_until for q in self.queue.values() if q.locked_until is not None]
        c = self.connection
        if c.sync_status == "paused" and c.next_probe_at is not None:
            times.append(c.next_probe_at)
        if c.lease_until is not None:
            times.append(c.lease_until)
        later = [t for t in times if t >= self.now]
        return min(later) if later else None


# --- just enough of psycopg's async API for WorkerStore ----------------------------------------


class FakeCursor:
    def __init__(self, session: DatabaseSession, as_dicts: bool) -> None:
        self.session = session
        self.as_dicts = as_dicts
        self.rows: list[Any] = []
        self.rowcount = -1

    async def execute(self, statement: str, params: dict[str, Any] | None = None) -> FakeCursor:
        result = self.session.run(statement, dict(params or {}))
        if isinstance(result, int):
            self.rows, self.rowcount = [], result
        else:
            self.rows = result if self.as_dicts else [tuple(r.values()) for r in result]
            self.rowcount = len(result)
        return self

    async def fetchall(self) -> list[Any]:
        rows, self.rows = self.rows, []
        return rows

    async def fetchone(self) -> Any:
        return self.rows.pop(0) if self.rows else None

    async def __aenter__(self) -> FakeCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class FakeConnection:
    def __init__(self, session: DatabaseSession) -> None:
        self.session = session

    def cursor(self, row_factory: Any = None) -> FakeCursor:
        return FakeCursor(self.session, row_factory is dict_row)

    async def execute(self, statement: str, params: dict[str, Any] | None = None) -> FakeCursor:
        return await FakeCursor(self.session, False).execute(statement, params)

    @asynccontextmanager
    async def transaction(self) -> Any:
        """All or nothing, as Postgres: a failure inside rolls every statement back."""
        db = self.session.db
        saved = db.snapshot()
        self.session.in_transaction = True
        try:
            yield self
        except BaseException:
            db.restore(saved)
            raise
        finally:
            self.session.in_transaction = False


class DatabaseSession:
    """One worker process's access to the database (dead after a simulated crash)."""

    def __init__(self, db: MemoryDatabase) -> None:
        self.db = db
        self.dead = False
        self.in_transaction = False

    def run(self, statement: str, params: dict[str, Any]) -> list[dict[str, Any]] | int:
        if self.dead:
            raise WorkerCrash("this worker is gone")
        db = self.db
        if (
            self.in_transaction
            and statement is statements().HOLDS_ACCOUNT
            and db.crash_rate
            and db.crash_rng.random() < db.crash_rate
        ):
            # Dies after its calls, before its record transaction (the first statement of
            # WorkerStore.record): every answer of the pass is lost at once.
            self.dead = True
            db.crashes += 1
            raise WorkerCrash("the worker died before recording its pass")
        return db.run(statement, params)


class FakePool:
    def __init__(self, session: DatabaseSession) -> None:
        self.session = session

    @asynccontextmanager
    async def connection(self) -> Any:
        yield FakeConnection(self.session)


# --- Mailchimp: the emulator, on the wire ------------------------------------------------------

_MEMBER_PATH = re.compile(r"^/3\.0/lists/(?P<list>[^/]+)/members/(?P<key>[^/]+)(?P<rest>/.*)?$")
_LIST_PATH = re.compile(r"^/3\.0/lists/(?P<list>[^/]+)$")


@dataclass(frozen=True)
class Before:
    """A member as it was just before a request reached the emulator."""

    contact_id: str
    status: str
    status_before_archive: str

    @property
    def effective_status(self) -> str:
        return self.status_before_archive if self.status == "archived" else self.status


def snapshot(audience: EmulatedAudience, m: EmulatedMember) -> tuple[object, ...]:
    return (
        m.email_address,
        m.status,
        sorted(m.merge_fields.items()),
        sorted(t.name.lower() for t in audience.member_tags(m)),
        m.status_before_archive,
    )


@dataclass
class MailchimpHistory:
    """Who did what to which member, keyed by the emulator's contact_id (stable across an email
    change). Filled from every API request mcsync sent and every admin action the test took."""

    calls: list[tuple[str, str]] = field(default_factory=list)  # (method, member hash)
    touched: set[str] = field(default_factory=set)  # mcsync sent a change for it
    owned: set[str] = field(default_factory=set)  # mcsync created it or applied a change
    mcsync_tags: dict[str, set[str]] = field(default_factory=dict)  # lowered tags mcsync set
    hand_tags: dict[str, set[str]] = field(default_factory=dict)  # lowered tags set elsewhere
    from_elsewhere: set[str] = field(default_factory=set)
    archived_by: dict[str, str] = field(default_factory=dict)  # "mcsync" | "elsewhere"
    initial: dict[str, tuple[object, ...]] = field(default_factory=dict)  # from elsewhere
    status_changes: list[tuple[str, str | None, str, str]] = field(default_factory=list)
    raise_attempts: list[tuple[str, str, str]] = field(default_factory=list)
    raised: list[tuple[str, str, str]] = field(default_factory=list)
    refused: list[tuple[str, str, int, str]] = field(default_factory=list)  # unexpected 4xx
    # Members Mailchimp refused to archive (405: pending, cleaned or archived): the mirror
    # leaves them as they are (docs/design.md, "The mirror, defined"). contact_id -> status.
    unarchivable: dict[str, str] = field(default_factory=dict)
    lost: int = 0  # answers dropped on the wire
    errors: int = 0  # 5xx/429 answers

    def tag(self, book: dict[str, set[str]], cid: str, names: Any) -> None:
        """Whoever last put a tag on the member owns it (tag names are shared, as in
        Mailchimp: a tag mcsync sets is mcsync's, whoever had set it before)."""
        other = self.hand_tags if book is self.mcsync_tags else self.mcsync_tags
        lowered = {str(n).strip().lower() for n in names}
        book.setdefault(cid, set()).update(lowered)
        other.get(cid, set()).difference_update(lowered)


class MailchimpSide(httpx.AsyncBaseTransport):
    """The emulator in-process, as mcsync's HTTP client reaches it; drops answers on request."""

    def __init__(self) -> None:
        self.app = create_app()
        self.emulator: Emulator = self.app.state.emulator
        self.inner = httpx.ASGITransport(app=self.app)
        self.history = MailchimpHistory()
        self.lost_rate = 0.0
        self.lost_rng = random.Random(0)
        self.lose: list[str] = []  # methods whose next answer is lost, in order

    def lose_next(self, method: str) -> None:
        """Lose the answer of the next `method` request (after Mailchimp applied it)."""
        self.lose.append(method)

    def audience(self) -> EmulatedAudience:
        found = self.emulator.store.audience(AUDIENCE_ID)
        assert found is not None
        return found[1]

    def _before(self, key: str) -> Before | None:
        m = self.audience().find(key)
        return None if m is None else Before(m.contact_id, m.status, m.status_before_archive)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if not path.startswith("/3.0/"):
            return await self.inner.handle_async_request(request)
        body = json.loads(request.content) if request.content else None
        member = _MEMBER_PATH.match(path)
        batch = _LIST_PATH.match(path) if request.method == "POST" else None
        pre: dict[str, Before | None] = {}
        if member:
            key = member["key"]
            pre[key] = self._before(key)
            self._note_request(request.method, key, member["rest"] or "", body, pre[key])
        elif batch and isinstance(body, dict):
            for item in body.get("members", []):
                h = subscriber_hash(item["email_address"])
                pre[h] = self._before(h)
                self.history.calls.append(("BATCH", h))
                if pre[h] is not None:
                    self.history.touched.add(pre[h].contact_id)  # type: ignore[union-attr]
        raw = await self.inner.handle_async_request(request)
        content = await raw.aread()
        response = httpx.Response(raw.status_code, headers=raw.headers, content=content)
        self._note_answer(request.method, path, body, pre, response, member, batch)
        if response.status_code < 400:
            targeted = bool(self.lose) and self.lose[0] == request.method
            if targeted:
                self.lose.pop(0)
            if targeted or (self.lost_rate and self.lost_rng.random() < self.lost_rate):
                self.history.lost += 1
                raise httpx.ReadTimeout("the answer was lost", request=request)
        return response

    def _note_request(
        self, method: str, key: str, rest: str, body: Any, before: Before | None
    ) -> None:
        h = self.history
        h.calls.append((method, key))
        if method == "PATCH" and isinstance(body, dict) and body.get("email_address"):
            h.calls.append(("PATCH-TO", subscriber_hash(body["email_address"])))
        if before is None or method == "GET":
            return
        h.touched.add(before.contact_id)
        if method == "POST" and rest == "/tags":
            # Asking for a tag makes it mcsync's whatever the answer (as it would be with a
            # good answer): mcsync may make it inactive later (maybe_tags), by design.
            active = [t["name"] for t in body["tags"] if t["status"] == "active"]
            h.tag(h.mcsync_tags, before.contact_id, active)
        status = body.get("status") if isinstance(body, dict) else None
        if method == "PUT" and status in ACTIVE and before.effective_status in COMPLIANCE:
            h.raise_attempts.append((key, before.effective_status, status))

    def _note_answer(
        self,
        method: str,
        path: str,
        body: Any,
        pre: dict[str, Before | None],
        response: httpx.Response,
        member: re.Match[str] | None,
        batch: re.Match[str] | None,
    ) -> None:
        h = self.history
        code = response.status_code
        if code >= 429:
            h.errors += 1
            return
        if code >= 400:
            text = response.text
            if method == "DELETE" and code == 405 and "cannot be removed" in text:
                before = pre[member["key"]] if member else None
                if before is not None:
                    h.unarchivable[before.contact_id] = before.status
                return
            if code != 404 and "is already in this list" not in text:
                h.refused.append((method, path, code, text[:300]))
            return
        audience = self.audience()
        if member:
            key = member["key"]
            before = pre[key]
            if method == "PUT":
                now = audience.members.get(key)
                assert now is not None
                explicit = body.get("status")
                if before is None or before.status != "archived" or explicit is not None:
                    h.owned.add(now.contact_id)
                if before is not None and explicit is not None and now.status != before.status:
                    h.status_changes.append(
                        (key, h.archived_by.get(now.contact_id), before.status, now.status)
                    )
                    if before.effective_status in COMPLIANCE and now.status in ACTIVE:
                        h.raised.append((key, before.effective_status, now.status))
                    if before.status == "archived":
                        h.archived_by.pop(now.contact_id, None)
            elif method == "PATCH" and before is not None and before.status != "archived":
                h.owned.add(before.contact_id)
            elif method == "DELETE" and before is not None:
                h.archived_by[before.contact_id] = "mcsync"
        elif batch:
            failed = {e["email_address"].strip().lower() for e in response.json()["errors"]}
            for item in body["members"]:
                email = item["email_address"]
                if email.strip().lower() in failed:
                    continue
                hh = subscriber_hash(email)
                before = pre[hh]
                now = audience.members.get(hh)
                assert now is not None
                if before is None or before.status != "archived":
                    h.owned.add(now.contact_id)
                    h.tag(h.mcsync_tags, now.contact_id, item.get("tags") or [])
                elif now.status != "archived":
                    # Brought back by `status_if_new` (the emulator's batch_status_if_new_
                    # unarchives): a status mcsync set, as surely as a PUT's `status`.
                    h.owned.add(now.contact_id)
                    h.tag(h.mcsync_tags, now.contact_id, item.get("tags") or [])
                    h.status_changes.append(
                        (hh, h.archived_by.pop(now.contact_id, None), before.status, now.status)
                    )
                    if before.effective_status in COMPLIANCE and now.status in ACTIVE:
                        h.raised.append((hh, before.effective_status, now.status))


# --- the world ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Faults:
    """Seeded failure rates: emulator 5xx/504/429 answers, lost answers, dying workers."""

    seed: int = 0
    errors: float = 0.0
    lost: float = 0.0
    crashes: float = 0.0


class World:
    """One user's contacts, the mcsync tables, the worker and the audience.

    Synchronous on the outside (each call runs the world's own event loop), so the tests read
    as before; use as a context manager, or call close()."""

    def __init__(
        self,
        double_optin: bool = False,
        *,
        claim_size: int = 1000,
        max_passes: int = 1,
        max_in_flight: int = 4,
        batch_threshold: int = 1000,
        unarchives: bool = False,
    ) -> None:
        self.double_optin = double_optin
        self.loop = asyncio.new_event_loop()
        self.mailchimp = MailchimpSide()
        self.http = httpx.AsyncClient(transport=self.mailchimp, base_url=BASE_URL)
        self._admin(
            "POST",
            "/accounts",
            {"access_token": TOKEN, "audiences": [{"id": AUDIENCE_ID, "name": "Audience"}]},
        )
        # The unrecorded case (docs/emulator.md): does a batch status_if_new unarchive?
        self._admin("POST", "/options", {"batch_status_if_new_unarchives": unarchives})
        self.db = MemoryDatabase(
            ConnectionRow(
                user_id=USER_ID,
                access_token_encrypted=CIPHER.encrypt(TOKEN, USER_ID),
                dc="us1",
                api_endpoint=BASE_URL,
                audience_id=AUDIENCE_ID,
                double_optin=double_optin,
            )
        )
        self.settings = AccountSettings(
            max_in_flight=max_in_flight,
            batch_threshold=batch_threshold,
            claim_size=claim_size,
            max_passes=max_passes,
        )
        self.clients = ClientFactory(BASE_URL + "/3.0", http=self.http)
        self.generation = 0
        self._start_worker()
        self.last_change: dict[UUID, datetime] = {}
        self.ever_desired: set[str] = set()
        self.passes = 0
        self._ids = 0

    def _start_worker(self) -> None:
        """A worker process (a new one after a crash: the dead one's leases must expire)."""
        self.generation += 1
        self.session = DatabaseSession(self.db)
        pool = cast(AsyncConnectionPool, FakePool(self.session))
        self.store = WorkerStore(pool, f"worker-{self.generation}", LEASE_SECONDS)
        accounts = AccountWorker(self.store, CIPHER, self.clients, self.settings, backoff=Backoff())
        self.worker = Worker(self.store, accounts)

    def __enter__(self) -> World:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.loop.run_until_complete(self.http.aclose())
        self.loop.close()

    def _run(self, coro: Awaitable[T]) -> T:
        return self.loop.run_until_complete(coro)

    def _admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._run(self.http.request(method, "/_emulator" + path, json=body))
        assert response.status_code < 400, f"admin {path}: {response.text}"
        return response.json()

    # --- reading Mailchimp -----------------------------------------------------------------

    @property
    def history(self) -> MailchimpHistory:
        return self.mailchimp.history

    @property
    def audience(self) -> EmulatedAudience:
        return self.mailchimp.audience()

    @property
    def members(self) -> dict[str, EmulatedMember]:
        """Every member (archived ones too), by subscriber hash."""
        return self.audience.members

    def tags_of(self, m: EmulatedMember) -> set[str]:
        return {t.name.lower() for t in self.audience.member_tags(m)}

    # --- the app's writes ------------------------------------------------------------------

    def _tick(self) -> None:
        self.db.now += timedelta(seconds=1)

    def new_id(self) -> UUID:
        self._ids += 1
        return UUID(int=self._ids)

    @property
    def contacts(self) -> dict[UUID, Contact]:
        return self.db.contacts

    def _note(self, contact: Contact) -> None:
        self.last_change[contact.id] = self.db.now
        email = normalize_email(contact.email)
        if email is not None:
            self.ever_desired.add(subscriber_hash(email))

    def insert(self, contact: Contact) -> None:
        self._tick()
        self.db.insert_contact(contact)
        self._note(contact)

    def update(self, contact: Contact) -> None:
        if self.db.contacts[contact.id] == contact:
            return  # the trigger only queues rows whose synced columns changed
        self._tick()
        self.db.update_contact(contact)
        self._note(contact)

    def delete(self, contact_id: UUID) -> None:
        self._tick()
        self.db.delete_contact(contact_id)
        self.last_change.pop(contact_id, None)

    # --- Mailchimp-side events (admin routes) ----------------------------------------------

    def _remember(self, email: str) -> None:
        m = self.members.get(subscriber_hash(email))
        if m is not None and m.contact_id in self.history.initial:
            self.history.initial[m.contact_id] = snapshot(self.audience, m)

    def add_elsewhere(
        self, email: str, status: str, tags: Any = (), before_archive: str = "subscribed"
    ) -> None:
        """A member that reached Mailchimp some other way (a form, an import)."""
        if subscriber_hash(email) in self.members:
            return
        tags = list(tags)
        first = before_archive if status == "archived" else status
        added = self._admin(
            "POST",
            "/members/add",
            {
                "list_id": AUDIENCE_ID,
                "email_address": email,
                "status": first,
                "merge_fields": {"FNAME": "Elsewhere"},
                "tags": tags,
            },
        )
        cid = added["contact_id"]
        self.history.from_elsewhere.add(cid)
        self.history.tag(self.history.hand_tags, cid, tags)
        self.history.initial[cid] = ()
        if status == "archived":
            self.archive_by_hand(email)
        self._remember(email)

    def unsubscribe(self, email: str) -> None:
        """The subscriber unsubscribes (a live member only)."""
        m = self.members.get(subscriber_hash(email))
        if m is not None and m.status in ACTIVE:
            self._admin(
                "POST", "/members/unsubscribe", {"list_id": AUDIENCE_ID, "email_address": email}
            )
            self._remember(email)

    def archive_by_hand(self, email: str) -> None:
        """Someone archives the member in Mailchimp's UI."""
        m = self.members.get(subscriber_hash(email))
        # Mailchimp archives no pending or cleaned member, by API or by hand: "Can not archive a
        # contact that is bounced, pending or archived" (the 405 recorded in grouparoo/grouparoo's
        # plugins/@grouparoo/mailchimp/__tests__/fixtures). A world where one was archived by hand
        # is not one Mailchimp can be in.
        if m is not None and m.status not in ("archived", "pending", "cleaned"):
            self._admin(
                "POST", "/members/archive", {"list_id": AUDIENCE_ID, "email_address": email}
            )
            self.history.archived_by[m.contact_id] = "elsewhere"
            self._remember(email)

    def tag_by_hand(self, email: str, tag: str) -> None:
        """A marketer tags the member in Mailchimp."""
        m = self.members.get(subscriber_hash(email))
        if m is not None:
            present = tag.lower() in self.tags_of(m)
            self._admin(
                "POST",
                "/members/tag",
                {"list_id": AUDIENCE_ID, "email_address": email, "tag": tag},
            )
            # Tagging a tag already there changes nothing, owner included. A tag mcsync is in
            # doubt about (maybe_tags: it asked, the answer never came) is mcsync's by design:
            # it will be made inactive if no contact wants it, whoever put it there meanwhile.
            entry = self.db.ledger.get(subscriber_hash(email))
            in_doubt = entry is not None and tag.lower() in {t.lower() for t in entry.maybe_tags}
            if not present and not in_doubt:
                self.history.tag(self.history.hand_tags, m.contact_id, [tag])
            self._remember(email)

    # --- faults ----------------------------------------------------------------------------

    def set_faults(self, faults: Faults) -> None:
        self.clear_faults()
        if faults.errors:
            # The emulator's seeded faults, per method: 500, 503, 504 (a
            # hold of 0 s) and 429 (throttling holds back the whole account), tried in turn,
            # each at `share`, so one fires with probability `errors`.
            share = 1 - (1 - faults.errors) ** (1 / 4)
            kinds: list[dict[str, Any]] = [
                {"status": 500},
                {"status": 503, "bodiless": True},
                {"timeout": 0},
                {"status": 429},
            ]
            first = True
            for method in ("GET", "PUT", "PATCH", "POST", "DELETE"):
                for kind in kinds:
                    spec = {**kind, "rate": share, "method": method, "path_regex": "^/3\\.0/"}
                    if first:
                        spec["seed"], first = faults.seed, False
                    self._admin("POST", "/faults", spec)
        self.mailchimp.lost_rate = faults.lost
        self.mailchimp.lost_rng = random.Random(faults.seed + 1)
        self.db.crash_rate = faults.crashes
        self.db.crash_rng = random.Random(faults.seed + 2)

    def clear_faults(self) -> None:
        self._admin("DELETE", "/faults")
        self.mailchimp.lost_rate = 0.0
        self.db.crash_rate = 0.0

    @contextmanager
    def faults(self, faults: Faults) -> Iterator[None]:
        self.set_faults(faults)
        try:
            yield
        finally:
            self.clear_faults()

    # --- the worker --------------------------------------------------------------------------

    def account(self) -> Account:
        assert self.db.connection.audience_id is not None
        return Account.from_row(asdict(self.db.connection))

    async def _serve_once(self) -> bool:
        """The real Worker.serve_due (claim the account if anything is due, serve it), awaited
        to the end. True when the pass changed anything but leases."""
        before = self.db.work_writes
        if not await self.worker.serve_due():
            return False
        self.passes += 1
        served = await asyncio.gather(*self.worker.busy.values(), return_exceptions=True)
        if any(isinstance(e, WorkerCrash) for e in served):
            self._start_worker()
            return True
        for e in served:
            if isinstance(e, BaseException):
                raise e
        return self.db.work_writes != before

    def one_pass(self) -> None:
        """Serve the account once, if anything is due now (faults stay as they are)."""
        self._run(self._serve_once())

    def quiet(self) -> bool:
        return not self.db.queue and self.db.connection.sync_status == "active"

    def drain(self, claim_size: int | None = None, max_rounds: int = 400) -> None:
        """Serve the account until nothing is left to do, moving the clock to the next retry,
        probe or lease expiry whenever nothing is due."""
        assert claim_size is None or claim_size == self.settings.claim_size
        for _ in range(max_rounds):
            if self.quiet():
                return
            if self._run(self._serve_once()):
                continue
            wakeup = self.db.next_wakeup()
            assert wakeup is not None, (
                f"stuck: {self.db.connection.sync_status}, queue {list(self.db.queue.values())}"
            )
            self.db.now = max(self.db.now, wakeup) + timedelta(milliseconds=1)
        raise AssertionError(f"not quiet after {max_rounds} rounds: {self.db.connection}")

    def load_facts_and_plan(self, events: list[Event]) -> Plan:
        """The real WorkerStore.load_facts and plan_for, as a pass would plan these events."""
        facts = self._run(self.store.load_facts(self.account(), events))
        return plan_for(facts, self.double_optin)

    def resync_events(self) -> list[Event]:
        """Every contact, as if queued again ('resync' rows; changed_at as the link says)."""
        out = []
        for i, c in enumerate(self.db.contacts, start=1):
            link = self.db.links.get(c)
            changed = link.changed_at if link is not None else self.last_change[c]
            out.append(Event(-i, c, "resync", None, 1, 0, changed))
        return out
