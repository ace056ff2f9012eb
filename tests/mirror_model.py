"""An in-memory model of a Mailchimp audience, the worker's ledger/links/queue, and one user's
contacts, for model-based tests of `mcsync.mirror`.

The audience follows the emulator's (strict) semantics (`mcsync.emulator.rules`):
- PUT with `status_if_new` creates a member or updates its merge fields; it never changes the
  status of an existing member. An archived member stays archived (nothing applied) unless the
  PUT carries an explicit `status`; `status: subscribed` on a member whose (pre-archive) status
  is unsubscribed/cleaned is refused (compliance state).
- PATCH with a new address renames the member (404 when missing, conflict when the new address
  is already a member).
- POST .../tags adds/removes by name, case-insensitively. DELETE archives (404 when already
  archived or missing).

The worker side follows `mcsync.worker.store.WorkerStore.load_facts` (what the planner is given),
`mcsync.worker.apply.MemberApplier` (which ledger every confirmed call leaves) and
`mcsync.worker.account.collect_outcomes` (how ledger and links are written back).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from uuid import UUID

from mcsync.mirror import (
    ArchiveMember,
    Contact,
    LedgerMember,
    MemberPlan,
    Op,
    Plan,
    RenameMember,
    UpdateTags,
    UpsertMember,
    clean_tags,
    normalize_email,
    plan_member_ops,
    subscriber_hash,
    write_ahead_ledger,
)

COMPLIANCE = ("unsubscribed", "cleaned")
WRITABLE = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional")
T0 = datetime(2024, 1, 1, tzinfo=UTC)


class Refused(Exception):
    """A contact-level refusal (e.g. compliance state)."""


class NotFound(Exception):
    pass


class Conflict(Exception):
    """The new address of a rename is already a member."""


@dataclass
class MCMember:
    email: str
    status: str
    merge_fields: dict[str, str]
    tags: dict[str, str]  # casefolded name -> name as first written
    status_before_archive: str = ""
    archived_by: str | None = None  # "mcsync" or "elsewhere"
    from_elsewhere: bool = False
    origin_tags: frozenset[str] = frozenset()  # casefolded tags it had from elsewhere
    mcsync_set: set[str] = field(default_factory=set)  # casefolded tags mcsync made active
    owned: bool = False  # mcsync created or updated it
    touched: bool = False  # mcsync made any call on it

    def snapshot(self) -> tuple[object, ...]:
        return (
            self.email, self.status, sorted(self.merge_fields.items()), sorted(self.tags),
            self.status_before_archive,
        )

    @property
    def effective_status(self) -> str:
        return self.status_before_archive if self.status == "archived" else self.status


class ModelAudience:
    def __init__(self) -> None:
        self.members: dict[str, MCMember] = {}
        self.everyone: list[MCMember] = []  # every member ever, renamed ones included
        self.initial: dict[int, tuple[object, ...]] = {}  # id(member) -> snapshot, elsewhere
        self.calls: list[tuple[str, str]] = []  # (verb, hash) of every mcsync call
        # mcsync asking for a subscribed/pending status on a member that is unsubscribed or
        # cleaned (refused or not), and statuses actually raised out of a compliance state.
        self.raise_attempts: list[tuple[str, str, str]] = []
        self.raised: list[tuple[str, str, str]] = []
        # Every status mcsync changed with an explicit `status`: (hash, archived_by, from, to).
        self.status_changes: list[tuple[str, str | None, str, str]] = []
        self.invalid: list[tuple[str, str]] = []  # requests Mailchimp would refuse as malformed

    # --- setup and Mailchimp-side events ----------------------------------------------------

    def add_elsewhere(
        self, email: str, status: str, tags: Iterable[str], before_archive: str = "subscribed"
    ) -> None:
        names = {t.casefold(): t for t in tags}
        member = MCMember(
            email=email,
            status=status,
            merge_fields={"FNAME": "Elsewhere", "COMPANY": "Acme"},
            tags=dict(names),
            status_before_archive=before_archive if status == "archived" else "",
            archived_by="elsewhere" if status == "archived" else None,
            from_elsewhere=True,
            origin_tags=frozenset(names),
        )
        self.members[subscriber_hash(email)] = member
        self.everyone.append(member)
        self.initial[id(member)] = member.snapshot()

    def unsubscribe(self, email_hash: str) -> None:
        """Mailchimp (the subscriber) unsubscribes a live member."""
        member = self.members.get(email_hash)
        if member is not None and member.status in ("subscribed", "pending"):
            member.status = "unsubscribed"
            if id(member) in self.initial:
                self.initial[id(member)] = member.snapshot()

    def archive_elsewhere(self, email_hash: str) -> None:
        """Someone archives a live member in Mailchimp's UI."""
        member = self.members.get(email_hash)
        if member is not None and member.status != "archived":
            member.status_before_archive = member.status
            member.status = "archived"
            member.archived_by = "elsewhere"
            if id(member) in self.initial:
                self.initial[id(member)] = member.snapshot()

    # --- the API, as mcsync calls it --------------------------------------------------------

    def _touch(self, verb: str, email_hash: str) -> None:
        self.calls.append((verb, email_hash))

    def put(
        self, email_hash: str, email: str, merge_fields: dict[str, str], status_if_new: str,
        status: str | None,
    ) -> MCMember:
        self._touch("PUT", email_hash)
        assert subscriber_hash(email) == email_hash, "PUT path and body disagree"
        member = self.members.get(email_hash)
        if member is None:
            if (status_if_new or status) not in WRITABLE:
                self.invalid.append((email_hash, f"status_if_new={status_if_new}"))
                raise Refused("invalid status_if_new")
            member = MCMember(
                email=email.strip(), status=status_if_new or status or "", merge_fields={},
                tags={},
            )
            member.merge_fields.update(merge_fields)
            member.owned = member.touched = True
            self.members[email_hash] = member
            self.everyone.append(member)
            return member
        member.touched = True
        if status is not None and status not in WRITABLE:
            self.invalid.append((email_hash, f"status={status}"))
            raise Refused(f"invalid status {status!r}")
        if status is not None:
            effective = member.effective_status
            if status in ("subscribed", "pending") and effective in COMPLIANCE:
                self.raise_attempts.append((email_hash, effective, status))
                if status == "subscribed":
                    raise Refused(f"{email} is in a compliance state")
        if member.status == "archived" and status is None:
            return member  # stays archived; nothing applied
        if status is not None and status != member.status:
            if member.effective_status in COMPLIANCE and status in ("subscribed", "pending"):
                self.raised.append((email_hash, member.effective_status, status))
            self.status_changes.append((email_hash, member.archived_by, member.status, status))
            member.status = status
            member.status_before_archive = ""
            member.archived_by = None
        member.merge_fields.update(merge_fields)
        member.owned = True
        return member

    def patch_email(
        self, old_hash: str, new_email: str, merge_fields: dict[str, str]
    ) -> MCMember:
        self._touch("PATCH", old_hash)
        member = self.members.get(old_hash)
        if member is None:
            raise NotFound(old_hash)
        member.touched = True
        new_hash = subscriber_hash(new_email)
        if new_hash != old_hash and new_hash in self.members:
            raise Conflict(new_email)
        if member.status == "archived":
            return member  # nothing applied without an explicit status
        if new_hash != old_hash:
            del self.members[old_hash]
            member.email = new_email.strip()
            self.members[new_hash] = member
        member.merge_fields.update(merge_fields)
        member.owned = True
        return member

    def get(self, email_hash: str) -> MCMember | None:
        return self.members.get(email_hash)

    def post_tags(self, email_hash: str, active: Iterable[str], inactive: Iterable[str]) -> None:
        self._touch("TAGS", email_hash)
        member = self.members.get(email_hash)
        if member is None:
            raise NotFound(email_hash)
        member.touched = True
        for name in active:
            member.tags.setdefault(name.strip().casefold(), name.strip())
            member.mcsync_set.add(name.strip().casefold())
        for name in inactive:
            member.tags.pop(name.strip().casefold(), None)

    def delete(self, email_hash: str) -> None:
        self._touch("DELETE", email_hash)
        member = self.members.get(email_hash)
        if member is None or member.status == "archived":
            raise NotFound(email_hash)
        member.touched = True
        member.status_before_archive = member.status
        member.status = "archived"
        member.archived_by = "mcsync"


# --- the worker ------------------------------------------------------------------------------


@dataclass
class Event:
    contact_id: UUID
    email: str | None  # the address before the first pending change (the trigger's q.email)
    changed_at: datetime


@dataclass
class Link:
    """A mailchimp_contact_links row: the member it was synced as (None: not yet), the members
    a pass in flight may have made it (maybe_hashes), and when the contact last changed."""

    email_hash: str | None
    changed_at: datetime
    maybe: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    plan: MemberPlan
    status: str = "done"
    ledger: dict[str, LedgerMember | None] = field(default_factory=dict)


@dataclass
class Facts:
    changed: list[Contact]
    deleted: list[UUID]
    sharing: list[Contact]
    links: dict[UUID, str]
    maybe_links: dict[UUID, tuple[str, ...]]
    ledger: dict[str, LedgerMember]
    recency: dict[UUID, datetime]


class World:
    """One user's contacts, the sync queue, the ledger and links, and the audience."""

    def __init__(self, double_optin: bool = False) -> None:
        self.double_optin = double_optin
        self.audience = ModelAudience()
        self.contacts: dict[UUID, Contact] = {}
        self.last_change: dict[UUID, datetime] = {}
        self.queue: dict[UUID, Event] = {}
        self.ledger: dict[str, LedgerMember] = {}
        self.links: dict[UUID, Link] = {}
        self.rejected: set[UUID] = set()
        self.plans: list[Plan] = []
        self.ever_desired: set[str] = set()
        self._clock = 0
        self._ids = 0

    # --- the app's writes, with the triggers' queue semantics -------------------------------

    def _tick(self) -> datetime:
        self._clock += 1
        return T0 + timedelta(seconds=self._clock)

    def new_id(self) -> UUID:
        self._ids += 1
        return UUID(int=self._ids)

    def _note_desired(self) -> None:
        for c in self.contacts.values():
            email = normalize_email(c.email)
            if email is not None:
                self.ever_desired.add(subscriber_hash(email))

    def insert(self, contact: Contact) -> None:
        assert contact.id not in self.contacts
        self.contacts[contact.id] = contact
        now = self._tick()
        self.last_change[contact.id] = now
        event = self.queue.get(contact.id)
        if event is None:
            self.queue[contact.id] = Event(contact.id, None, now)
        else:
            event.changed_at = now
        self._note_desired()

    def update(self, contact: Contact) -> None:
        old = self.contacts[contact.id]
        if old == contact:
            return  # the trigger only queues rows whose synced columns changed
        self.contacts[contact.id] = contact
        now = self._tick()
        self.last_change[contact.id] = now
        event = self.queue.get(contact.id)
        if event is None:
            self.queue[contact.id] = Event(contact.id, old.email, now)
        else:
            event.email = event.email if event.email is not None else old.email
            event.changed_at = now
        self._note_desired()

    def delete(self, contact_id: UUID) -> None:
        old = self.contacts.pop(contact_id)
        self.last_change.pop(contact_id, None)
        now = self._tick()
        event = self.queue.get(contact_id)
        if event is None:
            self.queue[contact_id] = Event(contact_id, old.email, now)
        else:
            event.email = event.email if event.email is not None else old.email
            event.changed_at = now

    # --- the worker ---------------------------------------------------------------------------

    def load_facts(self, events: list[Event]) -> Facts:
        """As WorkerStore.load_facts (contacts by email: lower(btrim(email)), btrim = spaces)."""
        ids = [e.contact_id for e in events]
        changed = [self.contacts[i] for i in ids if i in self.contacts]
        present = {c.id for c in changed}
        rows = {i: self.links[i] for i in ids if i in self.links}
        links = {i: r.email_hash for i, r in rows.items() if r.email_hash}
        maybe_links = {i: tuple(r.maybe) for i, r in rows.items() if r.maybe}
        linked = set(links.values()) | {x for xs in maybe_links.values() for x in xs}
        ledger = {x: self.ledger[x] for x in linked if x in self.ledger}
        emails = {normalize_email(c.email) for c in changed}
        emails |= {m.email for m in ledger.values()}
        emails |= {normalize_email(e.email) for e in events if e.email}
        lowered = sorted({e.lower() for e in emails if e})
        sharing = [
            c for c in self.contacts.values()
            if c.email is not None and c.email.strip(" ").lower() in lowered
        ]
        hashes = {subscriber_hash(e) for e in lowered} | linked
        ledger.update({x: self.ledger[x] for x in hashes - set(ledger) if x in self.ledger})
        others = [c.id for c in sharing if c.id not in present]
        recency = {i: self.links[i].changed_at for i in others if i in self.links}
        recency.update({e.contact_id: e.changed_at for e in events})
        return Facts(
            changed=changed,
            deleted=[i for i in ids if i not in present],
            sharing=sharing,
            links=links,
            maybe_links=maybe_links,
            ledger=ledger,
            recency=recency,
        )

    def plan(self, facts: Facts) -> Plan:
        return plan_member_ops(
            changed=facts.changed,
            deleted=facts.deleted,
            sharing=facts.sharing,
            links=facts.links,
            maybe_links=facts.maybe_links,
            ledger=facts.ledger,
            recency=facts.recency,
            double_optin=self.double_optin,
        )

    def drain(self, claim_size: int = 1000) -> None:
        """Process the queue until it is empty, `claim_size` contacts per pass."""
        while self.queue:
            events = list(self.queue.values())[:claim_size]
            self.process(events)

    def _write_ledger(self, entries: Iterable[LedgerMember | tuple[str, None]]) -> None:
        """UPSERT_LEDGER / DELETE_LEDGER (status = coalesce(new, old))."""
        for entry in entries:
            if isinstance(entry, tuple):
                self.ledger.pop(entry[0], None)
                continue
            old = self.ledger.get(entry.email_hash)
            status = entry.status if entry.status is not None else (old.status if old else None)
            self.ledger[entry.email_hash] = replace(entry, status=status)

    def process(self, events: list[Event]) -> None:
        """As AccountWorker._process, for a pass where every call gets an answer."""
        facts = self.load_facts(events)
        plan = self.plan(facts)
        self.plans.append(plan)
        ahead = write_ahead_ledger(plan.members, facts.ledger)
        new_links = {
            c: x for c, x in plan.links.items() if x is not None and x != facts.links.get(c)
        }
        self._write_ledger(ahead)
        now = T0 + timedelta(seconds=self._clock)
        for c, x in new_links.items():  # WRITE_AHEAD_LINKS
            row = self.links.setdefault(c, Link(None, now))
            if x not in row.maybe:
                row.maybe.append(x)
        written_ahead = {m.email_hash: m for m in ahead}
        outcomes = [self.apply(m, facts.ledger, written_ahead) for m in plan.members]
        self.collect(events, plan, outcomes)

    def collect(self, events: list[Event], plan: Plan, outcomes: list[Outcome]) -> None:
        """As collect_outcomes + WorkerStore.record, for a run where nothing is transient."""
        confirmed: dict[str, LedgerMember | None] = {}
        for o in outcomes:
            confirmed.update(o.ledger)
        self._write_ledger([(k, None) for k, v in confirmed.items() if v is None])
        self._write_ledger([v for v in confirmed.values() if v is not None])
        planner_rejections = {r.contact_id for r in plan.rejections}
        for event in events:
            cid = event.contact_id
            del self.queue[cid]  # completed
            mine = [o for o in outcomes if cid in o.plan.contact_ids]
            new_link = plan.links.get(cid)
            rejected = [o for o in mine if o.status == "rejected" and o.plan.email_hash == new_link]
            if cid in planner_rejections:
                self.rejected.add(cid)
            elif rejected:
                self.rejected.add(cid)
                continue  # keeps its link
            else:
                self.rejected.discard(cid)
            if new_link is None:
                self.links.pop(cid, None)
            else:
                self.links[cid] = Link(new_link, event.changed_at)

    def apply(
        self, plan: MemberPlan, ledger: dict[str, LedgerMember],
        written_ahead: dict[str, LedgerMember],
    ) -> Outcome:
        """As MemberApplier.apply: run the ops in order, recording the confirmed ledger."""
        out = Outcome(plan)
        desired_hash = plan.desired.fields_hash if plan.desired else None

        def current(email_hash: str) -> LedgerMember | None:
            if email_hash in out.ledger:
                return out.ledger[email_hash]
            return written_ahead.get(email_hash) or ledger.get(email_hash)

        def record(
            email_hash: str, member: MCMember, tags: Iterable[str], maybe: Iterable[str]
        ) -> None:
            confirmed = {t.casefold() for t in tags}
            out.ledger[email_hash] = LedgerMember(
                email_hash=email_hash,
                email=member.email,
                fields_hash=desired_hash,
                tags=tuple(clean_tags(tags)),
                maybe_tags=tuple(t for t in clean_tags(maybe) if t.casefold() not in confirmed),
                status=member.status,
                archived=member.status == "archived",
            )

        ops: list[Op] = list(plan.ops)
        audience = self.audience
        try:
            while ops:
                op = ops.pop(0)
                if isinstance(op, UpsertMember):
                    try:
                        member = audience.put(
                            op.email_hash, op.email, dict(op.merge_fields), op.status_if_new,
                            op.status,
                        )
                    except Refused:
                        if ledger.get(op.email_hash) is None and op.email_hash not in out.ledger:
                            out.ledger[op.email_hash] = None
                        raise
                    previous = current(op.email_hash)
                    record(
                        op.email_hash, member,
                        previous.tags if previous else (),
                        previous.maybe_tags if previous else (),
                    )
                elif isinstance(op, UpdateTags):
                    if op.active or op.inactive:
                        audience.post_tags(op.email_hash, op.active, op.inactive)
                    cur = current(op.email_hash)
                    if cur is not None:
                        gone = {t.casefold() for t in op.inactive}
                        settled = gone | {t.casefold() for t in op.active}
                        kept = [t for t in cur.tags if t.casefold() not in gone]
                        out.ledger[op.email_hash] = replace(
                            cur,
                            tags=tuple(clean_tags([*kept, *op.active])),
                            maybe_tags=tuple(
                                t for t in cur.maybe_tags if t.casefold() not in settled
                            ),
                        )
                elif isinstance(op, ArchiveMember):
                    cur = current(op.email_hash)
                    found = audience.get(op.email_hash)
                    if found is None:
                        out.ledger[op.email_hash] = None
                        continue
                    status = cur.status if cur is not None else None
                    if found.status != "archived":
                        status = found.status
                        try:
                            audience.delete(op.email_hash)
                        except NotFound:
                            out.ledger[op.email_hash] = None
                            continue
                    if cur is not None:
                        out.ledger[op.email_hash] = replace(cur, archived=True, status=status)
                else:
                    assert isinstance(op, RenameMember)
                    old = current(op.old_hash)
                    try:
                        member = audience.patch_email(
                            op.old_hash, op.email, dict(op.merge_fields)
                        )
                    except Conflict:
                        ops = list(op.on_conflict)
                        continue
                    except NotFound:
                        out.ledger[op.old_hash] = None
                        ops = list(op.on_missing)
                        continue
                    out.ledger[op.old_hash] = None
                    ahead = current(op.email_hash)
                    record(
                        op.email_hash, member,
                        old.tags if old else (),
                        ahead.maybe_tags if ahead else (),
                    )
        except (Refused, NotFound):
            out.status = "rejected"
        return out
