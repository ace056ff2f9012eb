"""Turn planned operations into Mailchimp calls, and report what each member ended up as.

Each member's operations run in order; different members run concurrently, never more than
`max_in_flight` calls at once for the account (`mcsync.worker.gate`). Many plain upserts go
through batch subscribe (`mcsync.worker.batch`). This module only makes the calls: what each
answer means for the ledger is `mcsync.ledger.MemberLedger`, so the outcome of every member
carries the ledger as far as Mailchimp confirmed it, and a failure halfway (or a crash)
replays only what is still missing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import ParamSpec, TypeVar

from mcsync.emails import subscriber_hash
from mcsync.ledger import MemberLedger
from mcsync.logging import get_logger
from mcsync.mailchimp.client import MailchimpClient
from mcsync.mailchimp.errors import (
    ContactLevelError,
    MailchimpError,
    NotFoundError,
    disposition,
)
from mcsync.mailchimp.models import BatchMember, BatchResult, Member
from mcsync.mirror import (
    ArchiveMember,
    LedgerMember,
    MemberPlan,
    Op,
    RenameMember,
    UpdateTags,
    UpsertMember,
)
from mcsync.worker.archived import ARCHIVED_PAGE_SIZE, ArchivedListing, list_archived
from mcsync.worker.batch import BATCH_LIMIT, apply_batch_chunk, batchable, payload_problem
from mcsync.worker.gate import AccountGate, Deferred
from mcsync.worker.types import MemberOutcome

__all__ = ["AccountGate", "Deferred", "MemberApplier", "apply_plans", "list_archived_members"]

log = get_logger("mcsync.worker")

P = ParamSpec("P")
R = TypeVar("R")


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
        archived_listing: ArchivedListing | None = None,
    ) -> None:
        self.client = client
        self.list_id = list_id
        self.gate = gate
        self.ledger = ledger  # as it was before this pass: what Mailchimp had confirmed
        # The ledger as written before the calls went out (see mcsync.ledger.write_ahead_ledger).
        self.written_ahead: Mapping[str, LedgerMember] = {m.email_hash: m for m in written_ahead}
        # Records the status a member had just before mcsync archives it (see archive_status).
        self.before_archive = before_archive
        self.user_id = user_id
        # The account's archived listing, shared by its passes (None: each lists its own).
        self.archived_listing = archived_listing
        # Tag names (casefolded) per member that went out in a call this pass, whatever its
        # answer: only these can have been set or removed by it (see `settle_unsent`).
        self.asked: dict[str, set[str]] = {}

    def outcome(self, plan: MemberPlan) -> MemberOutcome:
        """A member's outcome before any call: nothing confirmed yet."""
        return MemberOutcome(plan, MemberLedger(self.ledger, self.written_ahead))

    @staticmethod
    def failed(outcome: MemberOutcome, error: MailchimpError) -> None:
        """The member's calls stopped at `error`: its status is what the error means."""
        reason = error.reason if isinstance(error, ContactLevelError) else str(error)
        outcome.failed(disposition(error), error, reason)

    def invalid(self, plan: MemberPlan, problem: tuple[str, str]) -> MemberOutcome:
        """A member whose calls would be refused by Mailchimp's schema: rejected, never sent."""
        reason, field = problem
        outcome = self.outcome(plan)
        self.failed(
            outcome, ContactLevelError("Invalid Resource", reason, kind="invalid", field=field)
        )
        outcome.ledger.creation_refused(plan.email_hash)
        return outcome

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

    async def archived_hashes(self) -> set[str]:
        """The audience's archived members (their hashes), listed after this pass reached its
        batch subscribe: through the account's shared listing when there is one
        (`mcsync.worker.archived`), else by a listing of its own.

        Whether a batch `status_if_new` brings an archived member back is unrecorded (the
        emulator's `batch_status_if_new_unarchives` plays both answers), so a member archived
        by hand, which the ledger cannot know, is never sent through batch subscribe: only the
        single path (a PUT without `status`, which leaves it archived) touches it."""
        if self.archived_listing is not None:
            return await self.archived_listing.archived()
        return await self.list_archived()

    async def list_archived(self) -> set[str]:
        """One listing of the audience's archived members of its own."""
        return await list_archived_members(self.client, self.list_id, self.gate)

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
            return self.invalid(plan, problem)
        return await self.run_ops(self.outcome(plan), plan.ops)

    async def run_ops(self, outcome: MemberOutcome, ops: Sequence[Op]) -> MemberOutcome:
        """Run `ops` for `outcome.plan`, continuing from what `outcome` already confirmed."""
        try:
            await self._run(list(ops), outcome.plan, outcome)
        except Deferred:
            outcome.status = "deferred"
        except MailchimpError as exc:
            self.failed(outcome, exc)
        return outcome

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
                outcome.ledger.creation_refused(op.email_hash)
                raise
            # Only the phone was refused: sync the rest and say so, rather than nothing.
            merge_fields.pop("PHONE")
            member = await send(merge_fields)
            outcome.warnings.append((f"PHONE not synced: {exc.reason}", "PHONE"))
        desired_hash = plan.desired.fields_hash if plan.desired else None
        return outcome.ledger.upserted(op.email_hash, member, desired_hash, status_sent=status)

    async def _tags(self, op: UpdateTags, outcome: MemberOutcome) -> None:
        await self._asking(
            [(op.email_hash, [*op.active, *op.inactive])],
            self.client.update_member_tags,
            self.list_id,
            op.email_hash,
            active=op.active,
            inactive=op.inactive,
        )
        outcome.ledger.tags_updated(op.email_hash, op.active, op.inactive)

    async def _archive(self, op: ArchiveMember, outcome: MemberOutcome) -> None:
        # Read the status first: DELETE answers 204 with no body, and the status the member had
        # is what a later restore may set again (archived members receive nothing, so cannot
        # unsubscribe meanwhile). It also tells an archive already done (whose answer was lost).
        member = await self.get_member(op.email_hash)
        if member is None:
            outcome.ledger.gone(op.email_hash)
            return
        if member.status == "archived":
            status = outcome.ledger.status_to_restore(op.email_hash)
        else:
            status = member.status
            if self.before_archive is not None:
                await self.before_archive(op.email_hash, status)
            try:
                await self.gate.call(self.client.archive_member, self.list_id, op.email_hash)
            except NotFoundError:
                outcome.ledger.gone(op.email_hash)
                return
            except ContactLevelError as exc:
                if exc.kind != "cannot_archive":
                    raise
                self._archive_refused(outcome, op, status, exc)
                return
        outcome.ledger.archived(op.email_hash, status)

    def _archive_refused(
        self, outcome: MemberOutcome, op: ArchiveMember, status: str, exc: ContactLevelError
    ) -> None:
        """Mailchimp will not archive this member (405: pending, cleaned, or archived meanwhile).

        It is left as it is, for good (see `MemberLedger.archive_refused`), with a warning. An
        unconfirmed pending member receives nothing but its confirmation email; a cleaned one
        receives nothing at all."""
        outcome.ledger.archive_refused(op.email_hash)
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
        """The email change, then what follows it: (the fallback calls, whether they replace
        the plan's remaining calls rather than come first)."""
        moving = outcome.ledger.tags_moving(op.old_hash)
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
            outcome.ledger.rename_did_not_happen(op, op.on_conflict)
            return op.on_conflict, True
        except NotFoundError:
            outcome.ledger.gone(op.old_hash)
            if outcome.ledger.may_have_renamed(op):
                renamed = await self.get_member(op.email_hash)
                if renamed is not None:
                    # Our earlier rename happened; only its answer was lost. The old member's
                    # tags came along: re-send the fields, then the planned tag changes.
                    outcome.ledger.renamed(plan, op, renamed, None)
                    return tuple(o for o in op.on_missing if isinstance(o, UpsertMember)), False
            outcome.ledger.rename_did_not_happen(op, op.on_missing)
            return op.on_missing, True
        if not outcome.ledger.rename_answered(plan, op, member):
            # The old member is archived (by someone else): Mailchimp changed nothing. It is
            # left be, and the new address created as a member of its own.
            return op.on_missing, True
        return (), False


async def list_archived_members(
    client: MailchimpClient, list_id: str, gate: AccountGate
) -> set[str]:
    """The hashes of the audience's archived members, ids only, through the account's gate:
    one call per 1,000 archived members."""

    async def page(offset: int) -> tuple[list[str], int]:
        answer = await gate.call(
            client.list_members,
            list_id,
            count=ARCHIVED_PAGE_SIZE,
            offset=offset,
            status="archived",
            fields=["members.id"],
        )
        return [m.id for m in answer.members], answer.total_items

    return await list_archived(page)


def _tags_for(op: Op, email_hash: str) -> bool:
    return isinstance(op, UpdateTags) and op.email_hash == email_hash


async def apply_plans(
    applier: MemberApplier,
    plans: Sequence[MemberPlan],
    *,
    batch_threshold: int,
) -> list[MemberOutcome]:
    """Apply every member plan of one account; returns one outcome per plan, in order."""
    work = [p for p in plans if p.ops]
    idle = [applier.outcome(p) for p in plans if not p.ops]
    # Members that are or may be archived never go through batch subscribe (see
    # `MemberApplier.archived_hashes`): those the ledger knows, then those Mailchimp lists.
    batch = [p for p in work if batchable(p) and not applier.known_archived(p.email_hash)]
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
        asyncio.gather(*(apply_batch_chunk(applier, chunk) for chunk in chunks)),
        asyncio.gather(*(applier.apply(p) for p in singles)),
    )
    out: list[MemberOutcome] = list(idle)
    for chunk_outcomes in batched:
        out.extend(chunk_outcomes)
    out.extend(single)
    for outcome in out:
        outcome.ledger.settle_unsent(outcome.plan, applier.asked)
    return out
