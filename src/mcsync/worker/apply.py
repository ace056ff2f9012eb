"""Turn planned operations into Mailchimp calls, and report what each member ended up as.

Each member's operations run in order; different members run concurrently, never more than
`max_in_flight` calls at once for the account. Many plain upserts go through batch subscribe.
The outcome of every member carries the ledger as far as Mailchimp confirmed it, so a failure
halfway (or a crash) replays only what is still missing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, ParamSpec, TypeVar

from mcsync.emails import subscriber_hash
from mcsync.logging import get_logger
from mcsync.mailchimp.client import MailchimpClient
from mcsync.mailchimp.errors import (
    ConnectionLevelError,
    ContactLevelError,
    Disposition,
    MailchimpError,
    NotFoundError,
    TransientError,
    disposition,
    failed_batch_items,
)
from mcsync.mailchimp.models import BatchMember, BatchResult, Member, classify_batch_error
from mcsync.mirror import (
    ArchiveMember,
    LedgerMember,
    MemberPlan,
    Op,
    RenameMember,
    UpdateTags,
    UpsertMember,
    clean_tags,
)

log = get_logger("mcsync.worker")

BATCH_LIMIT = 500  # Mailchimp's batch subscribe takes at most 500 members a call

# What became of a member: done, deferred (not tried: the account stopped), or the disposition
# of the error that stopped it (mcsync.mailchimp.errors.disposition).
Status = Literal["done", "deferred"] | Disposition

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class MemberOutcome:
    """What became of one member plan, and the ledger as far as Mailchimp confirmed it."""

    plan: MemberPlan
    status: Status = "done"
    error: MailchimpError | None = None
    # The ledger as Mailchimp confirmed it: hash -> entry (None: forget the entry).
    ledger: dict[str, LedgerMember | None] = field(default_factory=dict)
    warnings: list[tuple[str, str | None]] = field(default_factory=list)

    @property
    def reason(self) -> str:
        if isinstance(self.error, ContactLevelError):
            return self.error.reason
        return str(self.error) if self.error else ""

    def failed(self, error: MailchimpError) -> None:
        """The member's calls stopped at `error`: its status is what the error means."""
        self.status, self.error = disposition(error), error


class AccountGate:
    """The account's shared state while it is served: the in-flight cap (shared by all its
    concurrent passes) and the flags that stop every pass from starting another call."""

    def __init__(self, max_in_flight: int) -> None:
        self.slots = asyncio.Semaphore(max_in_flight)
        self.throttled: TransientError | None = None
        self.connection_error: ConnectionLevelError | None = None
        self.paused = False
        self.lease_lost = False

    @property
    def stopped(self) -> bool:
        return (
            self.throttled is not None
            or self.connection_error is not None
            or self.paused
            or self.lease_lost
        )

    async def call(self, fn: Callable[P, Awaitable[R]], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run one Mailchimp call within the account's in-flight cap. A throttle or a lost
        connection (as `disposition` tells) stops every pass from starting another call;
        once stopped, raises `Deferred` instead of calling."""
        if self.stopped:
            raise Deferred
        async with self.slots:
            if self.stopped:
                raise Deferred
            try:
                return await fn(*args, **kwargs)
            except MailchimpError as exc:
                kind = disposition(exc)
                if kind == "throttled" and self.throttled is None:
                    assert isinstance(exc, TransientError)
                    self.throttled = exc
                elif kind == "connection":
                    assert isinstance(exc, ConnectionLevelError)
                    self.connection_error = exc
                raise


class Deferred(Exception):
    """The account was throttled or lost its credentials: don't start another call."""


class MemberApplier:
    """Runs the planned operations of one account's members, each member's in order, every
    call through the account's gate; reads the ledger as it was before the pass."""

    def __init__(
        self,
        client: MailchimpClient,
        list_id: str,
        gate: AccountGate,
        ledger: dict[str, LedgerMember],
        *,
        written_ahead: Sequence[LedgerMember] = (),
        before_archive: Callable[[str, str], Awaitable[None]] | None = None,
        user_id: str = "",
    ) -> None:
        self.client = client
        self.list_id = list_id
        self.gate = gate
        self.ledger = ledger  # as it was before this pass: what Mailchimp had confirmed
        # The ledger as written before the calls went out (see mirror.write_ahead_ledger).
        self.written_ahead = {m.email_hash: m for m in written_ahead}
        # Records the status a member had just before mcsync archives it (see archive_status).
        self.before_archive = before_archive
        self.user_id = user_id
        # Tag names (casefolded) per member that went out in a call this pass, whatever its
        # answer: only these can have been set or removed by it (see `settle_unsent`).
        self.asked: dict[str, set[str]] = {}

    async def get_member(self, email_hash: str) -> Member | None:
        return await self.gate.call(self.client.get_member, self.list_id, email_hash)

    async def batch_subscribe(self, members: Sequence[BatchMember]) -> BatchResult:
        sent = [(subscriber_hash(m.email_address), m.tags) for m in members]
        return await self._asking(
            sent, self.client.batch_subscribe, self.list_id, members, update_existing=True
        )

    async def _asking(
        self,
        sent: Sequence[tuple[str, Sequence[str]]],
        fn: Callable[P, Awaitable[R]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Call `fn` through the gate, noting the tags it asks for, as (member hash, names),
        once the call has gone out, whatever its answer (a Deferred one never did)."""
        try:
            result = await self.gate.call(fn, *args, **kwargs)
        except Deferred:
            raise
        except BaseException:
            self._note_asked(sent)
            raise
        self._note_asked(sent)
        return result

    def _note_asked(self, sent: Sequence[tuple[str, Sequence[str]]]) -> None:
        for email_hash, names in sent:
            self.asked.setdefault(email_hash, set()).update(n.casefold() for n in names)

    def settle_unsent(self, outcome: MemberOutcome) -> None:
        """Tags the written-ahead entry put in doubt for calls of this pass that never went out
        (an earlier call failed, or the account stopped) are not in doubt: mcsync sent nothing
        that could have set or removed them. Left in doubt, a tag mcsync never sent would later
        be made inactive, and a marketer's tag of the same name with it."""
        plan = outcome.plan
        hashes = {plan.email_hash, *([plan.renamed_from] if plan.renamed_from else [])}
        for email_hash in sorted(hashes & set(self.written_ahead)):
            entry = self.current(outcome, email_hash)
            if entry is None:
                continue
            before = self.ledger.get(email_hash)
            doubted = {t.casefold() for t in (before.maybe_tags if before else ())}
            asked = self.asked.get(email_hash, set())
            unsent = {
                t.casefold()
                for t in entry.maybe_tags
                if t.casefold() not in doubted and t.casefold() not in asked
            }
            if not unsent:
                continue
            # A removal never sent leaves the tag as confirmed as it was before the pass.
            kept = [t for t in (before.tags if before else ()) if t.casefold() in unsent]
            outcome.ledger[email_hash] = replace(
                entry,
                tags=tuple(clean_tags([*entry.tags, *kept])),
                maybe_tags=tuple(t for t in entry.maybe_tags if t.casefold() not in unsent),
            )

    async def archived_hashes(self) -> set[str]:
        """The audience's archived members (their hashes), read just before a batch subscribe.

        Whether a batch `status_if_new` brings an archived member back is unrecorded (the
        emulator's `batch_status_if_new_unarchives` plays both answers), so a member archived
        by hand, which the ledger cannot know, is never sent through batch subscribe: only the
        single path (a PUT without `status`, which leaves it archived) touches it."""
        out: set[str] = set()
        offset = 0
        while True:
            page = await self.gate.call(
                self.client.list_members,
                self.list_id,
                count=1000,
                offset=offset,
                status="archived",
                fields=["members.id"],
            )
            out |= {m.id for m in page.members}
            offset += len(page.members)
            if not page.members or offset >= page.total_items:
                return out

    def known_archived(self, email_hash: str) -> bool:
        """The ledger says the member is archived, or mcsync may have just archived it (an
        archive whose answer was lost, or one Mailchimp refused and mcsync let go)."""
        entry = self.ledger.get(email_hash)
        return entry is not None and entry.maybe_archived

    # --- one member ---------------------------------------------------------------------

    async def apply(self, plan: MemberPlan) -> MemberOutcome:
        """Run one member's plan; never raises a Mailchimp error (the outcome says it)."""
        problem = payload_problem(plan.ops)
        if problem is not None:
            return _invalid_outcome(self, plan, problem)
        return await self.run_ops(MemberOutcome(plan), plan.ops)

    async def run_ops(self, outcome: MemberOutcome, ops: Sequence[Op]) -> MemberOutcome:
        """Run `ops` for `outcome.plan`, continuing from what `outcome` already confirmed."""
        try:
            await self._run(list(ops), outcome.plan, outcome)
        except Deferred:
            outcome.status = "deferred"
        except MailchimpError as exc:
            outcome.failed(exc)
        return outcome

    def current(self, outcome: MemberOutcome, email_hash: str) -> LedgerMember | None:
        """The member's ledger entry as this pass knows it so far."""
        if email_hash in outcome.ledger:
            return outcome.ledger[email_hash]
        return self.written_ahead.get(email_hash) or self.ledger.get(email_hash)

    async def _run(self, ops: list[Op], plan: MemberPlan, outcome: MemberOutcome) -> None:
        while ops:
            op = ops.pop(0)
            if isinstance(op, UpsertMember):
                if not await self._upsert(op, plan, outcome):
                    # Archived by someone else, and left so: mcsync adds no tags to it either.
                    ops = [o for o in ops if not _tags_for(o, op.email_hash)]
            elif isinstance(op, UpdateTags):
                await self._tags(op, outcome)
            elif isinstance(op, ArchiveMember):
                await self._archive(op, outcome)
            elif isinstance(op, RenameMember):
                fallback, replaces = await self._rename(op, plan, outcome)
                # A fallback replaces what the rename would have led to, or comes first.
                ops = list(fallback) if replaces else [*fallback, *ops]

    def record_member(
        self,
        outcome: MemberOutcome,
        email_hash: str,
        member: Member,
        fields_hash: str | None,
        tags: Sequence[str],
        maybe_tags: Sequence[str] = (),
    ) -> None:
        """Note in `outcome` what Mailchimp confirmed the member is."""
        confirmed = {t.casefold() for t in tags}
        previous = self.current(outcome, email_hash)
        # Mailchimp may leave fields out of an answer (models default them to ""): the address
        # then is the one mcsync sent or last knew, and an unknown status is no status.
        email = member.email_address or (previous.email if previous is not None else "")
        outcome.ledger[email_hash] = LedgerMember(
            email_hash=email_hash,
            email=email,
            fields_hash=fields_hash,
            tags=tuple(clean_tags(tags)),
            maybe_tags=tuple(t for t in clean_tags(maybe_tags) if t.casefold() not in confirmed),
            status=member.status or None,
            archived=member.status == "archived",
            archive_status=previous.archive_status
            if previous is not None and member.status == "archived"
            else None,
        )

    async def _upsert(self, op: UpsertMember, plan: MemberPlan, outcome: MemberOutcome) -> bool:
        """PUT the member; False if it is archived and stays so (nothing was applied)."""
        status = op.status
        if status is not None:
            # A restore sets a status, so first make sure the member really is archived: an
            # archive whose answer was lost may not have happened, and the person may have
            # unsubscribed since. Never raise a live member's status.
            found = await self.get_member(op.email_hash)
            if found is None or found.status != "archived":
                status = None

        async def send(merge_fields: dict[str, str]) -> Member:
            return await self.gate.call(
                self.client.upsert_member,
                self.list_id,
                op.email,
                merge_fields=merge_fields,
                status_if_new=op.status_if_new,
                status=status,
            )

        merge_fields = dict(op.merge_fields)
        try:
            member = await send(merge_fields)
        except ContactLevelError as exc:
            if not (
                exc.kind == "merge_fields" and exc.field == "PHONE" and merge_fields.get("PHONE")
            ):
                self.forget_if_refused(outcome, op.email_hash)
                raise
            # Only the phone was refused: sync the rest and say so, rather than nothing.
            merge_fields.pop("PHONE")
            member = await send(merge_fields)
            outcome.warnings.append((f"PHONE not synced: {exc.reason}", "PHONE"))
        desired_hash = plan.desired.fields_hash if plan.desired else None
        left_archived = member.status == "archived" and status is None
        if left_archived:
            # Mailchimp applied nothing to an archived member sent without a status: no tag the
            # written-ahead entry put in doubt came near it, so only what was confirmed before
            # this pass stays mcsync's (a marketer's tag of the same name is never taken).
            tags = _tags_of(self.ledger.get(op.email_hash))
        else:
            tags = _tags_of(self.current(outcome, op.email_hash))
        self.record_member(outcome, op.email_hash, member, desired_hash, *tags)
        return not left_archived

    async def _tags(self, op: UpdateTags, outcome: MemberOutcome) -> None:
        await self._asking(
            [(op.email_hash, [*op.active, *op.inactive])],
            self.client.update_member_tags,
            self.list_id,
            op.email_hash,
            active=op.active,
            inactive=op.inactive,
        )
        current = self.current(outcome, op.email_hash)
        if current is None:
            return
        gone = {t.casefold() for t in op.inactive}
        settled = gone | {t.casefold() for t in op.active}
        kept = [t for t in current.tags if t.casefold() not in gone]
        outcome.ledger[op.email_hash] = replace(
            current,
            tags=tuple(clean_tags([*kept, *op.active])),
            maybe_tags=tuple(t for t in current.maybe_tags if t.casefold() not in settled),
        )

    def forget_if_refused(self, outcome: MemberOutcome, email_hash: str) -> None:
        """Mailchimp refused to create the member: the write-ahead entry claims nothing real."""
        if self.ledger.get(email_hash) is None and email_hash not in outcome.ledger:
            outcome.ledger[email_hash] = None

    async def _archive(self, op: ArchiveMember, outcome: MemberOutcome) -> None:
        current = self.current(outcome, op.email_hash)
        # Read the status first: DELETE answers 204 with no body, and the status the member had
        # is what a later restore may set again (archived members receive nothing, so cannot
        # unsubscribe meanwhile). It also tells an archive already done (whose answer was lost).
        member = await self.get_member(op.email_hash)
        if member is None:
            outcome.ledger[op.email_hash] = None  # gone from Mailchimp: nothing left to own
            return
        if member.status == "archived":
            # Archived already: by mcsync, if it noted the status just before (an archive whose
            # answer was lost), else by someone else, whose archive must stand: no restore.
            noted = current.archive_status if current is not None else None
            status = noted or "archived"
        else:
            status = member.status
            if self.before_archive is not None:
                await self.before_archive(op.email_hash, status)
            try:
                await self.gate.call(self.client.archive_member, self.list_id, op.email_hash)
            except NotFoundError:
                outcome.ledger[op.email_hash] = None
                return
            except ContactLevelError as exc:
                if exc.kind != "cannot_archive":
                    raise
                self._archive_refused(outcome, op, current, status, exc)
                return
        if current is not None:
            outcome.ledger[op.email_hash] = replace(
                current, archived=True, status=status, archive_status=status
            )

    def _archive_refused(
        self,
        outcome: MemberOutcome,
        op: ArchiveMember,
        current: LedgerMember | None,
        status: str,
        exc: ContactLevelError,
    ) -> None:
        """Mailchimp will not archive this member (405: pending, cleaned, or archived meanwhile).

        It is left as it is, for good: mcsync retires its entry (``archived`` with no
        ``archive_status`` nor status, so it is never archived again nor restored), keeps
        its tags (a returning contact still has mcsync's tags settled) and records a warning.
        An unconfirmed pending member receives nothing but its confirmation email; a cleaned one
        receives nothing at all."""
        if current is not None:
            # No archive_status: a restore sends only that, and this member may be archived by
            # hand later; a returning contact must never raise it.
            outcome.ledger[op.email_hash] = replace(
                current, archived=True, status=None, archive_status=None
            )
        left = "archived" if status == "archived" else f"left {status}"
        reason = f"Mailchimp cannot archive this member: {left}. {exc.reason}"
        outcome.warnings.append((reason, None))
        log.info(
            "archive_refused",
            user_id=self.user_id,
            op="archive_member",
            outcome="cannot_archive",
            status=status,
            member=op.email_hash[:12],
        )

    async def _rename(
        self, op: RenameMember, plan: MemberPlan, outcome: MemberOutcome
    ) -> tuple[tuple[Op, ...], bool]:
        old = self.current(outcome, op.old_hash)
        # The old member's tags as they were before this pass (its written-ahead entry holds
        # them all in doubt, in case the member is gone): these move with a rename.
        before = self.ledger.get(op.old_hash)
        moving = [*before.tags, *before.maybe_tags] if before is not None else []
        try:
            member = await self._asking(
                [(op.email_hash, moving), (op.old_hash, moving)],
                self.client.change_member_email,
                self.list_id,
                op.old_hash,
                op.email,
                merge_fields=dict(op.merge_fields),
            )
        except ContactLevelError as exc:
            if exc.kind not in ("already_in_list", "member_exists"):
                raise
            log.info(
                "email_change_conflict",
                user_id=self.user_id,
                op="change_member_email",
                outcome="merged_into_existing",
                member=op.email_hash[:12],
            )
            outcome.warnings.append(
                (
                    "new address was already in the audience; synced into that member",
                    "email_address",
                )
            )
            self._rename_did_not_happen(outcome, op, op.on_conflict)
            return op.on_conflict, True
        except NotFoundError:
            outcome.ledger[op.old_hash] = None
            ahead = self.current(outcome, op.email_hash)
            if ahead is not None and ahead.pending_rename_from == op.old_hash:
                renamed = await self.get_member(op.email_hash)
                if renamed is not None:
                    # Our earlier rename happened; only its answer was lost. The old member's
                    # tags came along: re-send the fields, then the planned tag changes.
                    tags = _moved(plan, before, self.ledger.get(op.email_hash))
                    self.record_member(outcome, op.email_hash, renamed, None, *tags)
                    return tuple(o for o in op.on_missing if isinstance(o, UpsertMember)), False
            self._rename_did_not_happen(outcome, op, op.on_missing)
            return op.on_missing, True
        moved = not member.email_address or member.email_address.lower() == op.email.lower()
        if member.status == "archived" or not moved:
            # The old member is archived (by someone else): Mailchimp changed nothing. Leave
            # it be and create the new address as a member of its own.
            if old is not None:
                outcome.ledger[op.old_hash] = replace(old, archived=True, status=member.status)
            self._rename_did_not_happen(outcome, op, op.on_missing)
            return op.on_missing, True
        outcome.ledger[op.old_hash] = None
        desired_hash = plan.desired.fields_hash if plan.desired else None
        tags = _moved(plan, before, self.ledger.get(op.email_hash))
        self.record_member(outcome, op.email_hash, member, desired_hash, *tags)
        return (), False

    def _rename_did_not_happen(
        self, outcome: MemberOutcome, op: RenameMember, fallback: Sequence[Op]
    ) -> None:
        """The written-ahead entry for the new address assumed the old member's tags might move
        with it. They did not: keep in doubt only the tags the fallback itself will send, so a
        marketer's tag on an existing member is never taken for one of ours."""
        sending = [t for o in fallback if isinstance(o, UpdateTags) for t in o.active]
        outcome.ledger[op.email_hash] = LedgerMember(
            email_hash=op.email_hash,
            email=op.email,
            fields_hash=None,
            tags=(),
            maybe_tags=tuple(clean_tags(sending)),
        )


# Mailchimp's member statuses (its schema refuses any other value, failing a whole batch).
MEMBER_STATUSES = frozenset({"subscribed", "unsubscribed", "cleaned", "pending", "transactional"})


def payload_problem(ops: Sequence[Op]) -> tuple[str, str] | None:
    """What Mailchimp's schema would refuse in these calls, as (reason, field); None if
    nothing. Checked before sending: one schema-invalid member fails a whole batch subscribe
    (brandonseydel/MailChimp.Net#567)."""
    for op in ops:
        if isinstance(op, (UpsertMember, RenameMember)):
            if not isinstance(op.email, str) or not op.email.strip():
                return "no email address to send", "email_address"
            for name, value in op.merge_fields.items():
                if not isinstance(value, str):
                    return f"merge field {name} is not text", name
        if isinstance(op, UpsertMember):
            for status in (op.status, op.status_if_new):
                if status is not None and status not in MEMBER_STATUSES:
                    return f"status {status!r} is not one Mailchimp accepts", "status"
        if isinstance(op, UpdateTags):
            if any(not isinstance(t, str) or not t.strip() for t in [*op.active, *op.inactive]):
                return "a tag is not a name", "tags"
    return None


def _invalid_outcome(
    applier: MemberApplier, plan: MemberPlan, problem: tuple[str, str]
) -> MemberOutcome:
    """A member whose calls would be refused by Mailchimp's schema: rejected, never sent."""
    reason, field = problem
    outcome = MemberOutcome(plan)
    outcome.failed(ContactLevelError("Invalid Resource", reason, kind="invalid", field=field))
    applier.forget_if_refused(outcome, plan.email_hash)
    return outcome


def _moved(
    plan: MemberPlan, old: LedgerMember | None, new: LedgerMember | None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The tags of a member renamed from `old` (its entry before the pass): the old member's,
    except those the plan's tag calls still to come change, which stay in doubt until Mailchimp
    confirms them (like every tag of a call whose answer may be lost), as do those in doubt
    before on either address (`new`: the new address's entry before the pass)."""
    tags, maybe = _tags_of(old)
    pending = [
        t
        for o in plan.ops
        if isinstance(o, UpdateTags) and o.email_hash == plan.email_hash
        for t in (*o.active, *o.inactive)
    ]
    doubted = {t.casefold() for t in pending}
    kept = tuple(t for t in tags if t.casefold() not in doubted)
    return kept, (*maybe, *(new.maybe_tags if new is not None else ()), *pending)


def _tags_for(op: Op, email_hash: str) -> bool:
    return isinstance(op, UpdateTags) and op.email_hash == email_hash


def _tags_of(entry: LedgerMember | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """An entry's confirmed and in-doubt tags (none without an entry)."""
    return (entry.tags, entry.maybe_tags) if entry is not None else ((), ())


# --- batch subscribe -----------------------------------------------------------------------


def _batchable(plan: MemberPlan) -> bool:
    """Plain upserts (optionally followed by tags) can go through batch subscribe."""
    ops = plan.ops
    if not ops or not isinstance(ops[0], UpsertMember) or ops[0].status is not None:
        return False
    return all(isinstance(o, UpdateTags) for o in ops[1:]) and len(ops) <= 2


def _batch_member(plan: MemberPlan) -> BatchMember:
    upsert, tag_op = _batch_ops(plan)
    return BatchMember(
        email_address=upsert.email,
        status_if_new=upsert.status_if_new,
        merge_fields=dict(upsert.merge_fields),
        tags=list(tag_op.active if tag_op else ()),
    )


def _batch_ops(plan: MemberPlan) -> tuple[UpsertMember, UpdateTags | None]:
    """A batchable plan's upsert, and its tag changes if any (see `_batchable`)."""
    upsert = plan.ops[0]
    tag_op = plan.ops[1] if len(plan.ops) > 1 else None
    assert isinstance(upsert, UpsertMember)
    assert tag_op is None or isinstance(tag_op, UpdateTags)
    return upsert, tag_op


def _batch_key(email: str) -> str:
    return email.strip().lower()


async def _apply_batch_chunk(
    applier: MemberApplier, plans: Sequence[MemberPlan]
) -> list[MemberOutcome]:
    """Send up to 500 plain upserts in one batch subscribe, then finish each member singly
    where the batch could not (a refused phone, no answer, tags to remove)."""
    checked = [(i, payload_problem(p.ops)) for i, p in enumerate(plans)]
    if any(problem is not None for _, problem in checked):
        # A member Mailchimp's schema would refuse fails the whole batch: never send it.
        good = [i for i, problem in checked if problem is None]
        out = {i: _invalid_outcome(applier, plans[i], pr) for i, pr in checked if pr is not None}
        if good:
            sent = await _apply_batch_chunk(applier, [plans[i] for i in good])
            out.update(zip(good, sent, strict=True))
        return [out[i] for i in range(len(plans))]
    outcomes = [MemberOutcome(plan) for plan in plans]
    try:
        result = await applier.batch_subscribe([_batch_member(p) for p in plans])
    except Deferred:
        for o in outcomes:
            o.status = "deferred"
        return outcomes
    except MailchimpError as exc:
        if disposition(exc) == "rejected":
            # The request as a whole was refused (one schema-invalid member fails them all):
            # isolate the bad members, sync the rest.
            return await _split_refused_batch(applier, plans, exc)
        for o in outcomes:
            o.failed(exc)
        return outcomes
    singly, follow_ups = _read_batch_result(applier, plans, outcomes, result)

    async def single(i: int) -> None:
        outcomes[i] = await applier.apply(plans[i])

    async def follow_up(i: int, ops: tuple[Op, ...]) -> None:
        await applier.run_ops(outcomes[i], ops)

    await asyncio.gather(
        *(single(i) for i in singly), *(follow_up(i, ops) for i, ops in follow_ups)
    )
    return outcomes


async def _split_refused_batch(
    applier: MemberApplier, plans: Sequence[MemberPlan], exc: MailchimpError
) -> list[MemberOutcome]:
    """A whole-batch 400: reject the members it names (``members.item:<n>``,
    brandonseydel/MailChimp.Net#567) and send the others again; when it names none, bisect
    until each bad member is alone."""
    named = [i for i in failed_batch_items(exc) if i < len(plans)]
    if not named and len(plans) == 1:
        named = [0]
    if named:
        outcomes: dict[int, MemberOutcome] = {}
        for i in named:
            outcomes[i] = _refused_member(applier, plans[i], exc, i)
        rest = [i for i in range(len(plans)) if i not in outcomes]
        if rest:
            again = await _apply_batch_chunk(applier, [plans[i] for i in rest])
            outcomes.update(zip(rest, again, strict=True))
        return [outcomes[i] for i in range(len(plans))]
    half = len(plans) // 2
    left, right = await asyncio.gather(
        _apply_batch_chunk(applier, plans[:half]), _apply_batch_chunk(applier, plans[half:])
    )
    return [*left, *right]


def _refused_member(
    applier: MemberApplier, plan: MemberPlan, exc: MailchimpError, index: int
) -> MemberOutcome:
    """The member a whole-batch 400 was about, rejected with what Mailchimp said of it."""
    prefix = f"members.item:{index}"
    mine = [e for e in exc.errors if e.field.strip().startswith(prefix)]
    field = mine[0].field.strip()[len(prefix) :].lstrip(".") if mine else None
    reason = "; ".join(f"{field or 'member'}: {e.message}" for e in mine) or str(exc)
    error = ContactLevelError(
        exc.title,
        exc.detail,
        kind="invalid",
        field=field or None,
        reason=reason,
        status=exc.status,
        errors=mine,
    )
    outcome = MemberOutcome(plan)
    outcome.failed(error)
    upsert, _ = _batch_ops(plan)
    applier.forget_if_refused(outcome, upsert.email_hash)
    return outcome


def _read_batch_result(
    applier: MemberApplier,
    plans: Sequence[MemberPlan],
    outcomes: list[MemberOutcome],
    result: BatchResult,
) -> tuple[list[int], list[tuple[int, tuple[Op, ...]]]]:
    """Record what the batch confirmed or refused for each member. Returns the members to
    retry on the single path, and the follow-up calls of the confirmed ones."""
    confirmed: dict[str, Member] = {
        _batch_key(m.email_address): m for m in [*result.new_members, *result.updated_members]
    }
    errors = {_batch_key(e.email_address): e for e in result.errors}
    retry_singly: list[int] = []
    follow_ups: list[tuple[int, tuple[Op, ...]]] = []
    for i, (plan, outcome) in enumerate(zip(plans, outcomes, strict=True)):
        upsert, tag_op = _batch_ops(plan)
        key = _batch_key(upsert.email)
        if key in errors:
            err = classify_batch_error(errors[key])
            if err.kind == "merge_fields" and err.field == "PHONE":
                retry_singly.append(i)  # the single path knows how to drop just the phone
            else:
                outcome.failed(err)  # rejected, or postponed (a temporary refusal)
                applier.forget_if_refused(outcome, upsert.email_hash)
            continue
        member = confirmed.get(key)
        if member is None:
            # Neither confirmed nor refused: ask again on the single path rather than guess.
            retry_singly.append(i)
            continue
        _record_batched_member(applier, plan, outcome, member)
        if tag_op is not None and tag_op.inactive:
            # Batch subscribe can only add tags; removals take the tags endpoint.
            follow_ups.append((i, (UpdateTags(upsert.email_hash, (), tag_op.inactive),)))
    return retry_singly, follow_ups


def _record_batched_member(
    applier: MemberApplier, plan: MemberPlan, outcome: MemberOutcome, member: Member
) -> None:
    upsert, tag_op = _batch_ops(plan)
    previous = applier.current(outcome, upsert.email_hash)
    if member.status == "archived":
        # Batch subscribe changes nothing on an archived member (no status was sent): the
        # tags in the request were not added, whatever the written-ahead entry feared.
        tags, maybe = _tags_of(applier.ledger.get(upsert.email_hash))
    else:
        tags = (*(previous.tags if previous else ()), *(tag_op.active if tag_op else ()))
        maybe = previous.maybe_tags if previous else ()
    applier.record_member(
        outcome,
        upsert.email_hash,
        member,
        plan.desired.fields_hash if plan.desired else None,
        tags,
        maybe,
    )


async def apply_plans(
    applier: MemberApplier,
    plans: Sequence[MemberPlan],
    *,
    batch_threshold: int,
) -> list[MemberOutcome]:
    """Apply every member plan of one account; returns one outcome per plan, in order."""
    work = [p for p in plans if p.ops]
    idle = [MemberOutcome(p) for p in plans if not p.ops]
    # Members that are or may be archived never go through batch subscribe (see
    # `MemberApplier.archived_hashes`): those the ledger knows, then those Mailchimp lists.
    batch = [p for p in work if _batchable(p) and not applier.known_archived(p.email_hash)]
    if len(batch) < batch_threshold:
        batch = []
    if batch:
        try:
            archived = await applier.archived_hashes()
        except (Deferred, MailchimpError):
            archived = {p.email_hash for p in batch}  # unknown: every member goes singly
        batch = [p for p in batch if p.email_hash not in archived]
    batch_ids = {id(p) for p in batch}
    singles = [p for p in work if id(p) not in batch_ids]
    chunks = [batch[i : i + BATCH_LIMIT] for i in range(0, len(batch), BATCH_LIMIT)]
    batched, single = await asyncio.gather(
        asyncio.gather(*(_apply_batch_chunk(applier, chunk) for chunk in chunks)),
        asyncio.gather(*(applier.apply(p) for p in singles)),
    )
    out: list[MemberOutcome] = list(idle)
    for chunk_outcomes in batched:
        out.extend(chunk_outcomes)
    out.extend(single)
    for outcome in out:
        applier.settle_unsent(outcome)
    return out
