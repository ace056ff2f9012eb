"""Batch subscribe: many plain upserts in one call, 500 members at most, and what Mailchimp's
schema would refuse checked before anything is sent (one schema-invalid member fails a whole
batch). `mcsync.worker.apply.apply_plans` decides which members go this way; what each answer
means for the ledger is `mcsync.ledger.MemberLedger`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mcsync.mailchimp.errors import (
    ContactLevelError,
    MailchimpError,
    disposition,
    failed_batch_items,
)
from mcsync.mailchimp.models import BatchMember, BatchResult, Member, classify_batch_error
from mcsync.mirror import MemberPlan, Op, RenameMember, UpdateTags, UpsertMember
from mcsync.worker.gate import Deferred
from mcsync.worker.types import MemberOutcome

if TYPE_CHECKING:
    from mcsync.worker.apply import MemberApplier

BATCH_LIMIT = 500  # Mailchimp's batch subscribe takes at most 500 members a call

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


def batchable(plan: MemberPlan) -> bool:
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
        merge_fields=upsert.merge_fields,  # validation makes the member a dict of its own
        tags=list(tag_op.active if tag_op else ()),
    )


def _batch_ops(plan: MemberPlan) -> tuple[UpsertMember, UpdateTags | None]:
    """A batchable plan's upsert, and its tag changes if any (see `batchable`)."""
    upsert = plan.ops[0]
    tag_op = plan.ops[1] if len(plan.ops) > 1 else None
    assert isinstance(upsert, UpsertMember)
    assert tag_op is None or isinstance(tag_op, UpdateTags)
    return upsert, tag_op


def _batch_key(email: str) -> str:
    return email.strip().lower()


async def apply_batch_chunk(
    applier: MemberApplier, plans: Sequence[MemberPlan]
) -> list[MemberOutcome]:
    """Send up to 500 plain upserts in one batch subscribe, then finish each member singly
    where the batch could not (a refused phone, no answer, tags to remove)."""
    checked = [(i, payload_problem(p.ops)) for i, p in enumerate(plans)]
    if any(problem is not None for _, problem in checked):
        # A member Mailchimp's schema would refuse fails the whole batch: never send it.
        good = [i for i, problem in checked if problem is None]
        out = {i: applier.invalid(plans[i], pr) for i, pr in checked if pr is not None}
        if good:
            sent = await apply_batch_chunk(applier, [plans[i] for i in good])
            out.update(zip(good, sent, strict=True))
        return [out[i] for i in range(len(plans))]
    outcomes = [applier.outcome(plan) for plan in plans]
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
            applier.failed(o, exc)
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
            again = await apply_batch_chunk(applier, [plans[i] for i in rest])
            outcomes.update(zip(rest, again, strict=True))
        return [outcomes[i] for i in range(len(plans))]
    half = len(plans) // 2
    left, right = await asyncio.gather(
        apply_batch_chunk(applier, plans[:half]), apply_batch_chunk(applier, plans[half:])
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
    outcome = applier.outcome(plan)
    applier.failed(outcome, error)
    upsert, _ = _batch_ops(plan)
    outcome.ledger.creation_refused(upsert.email_hash)
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
                applier.failed(outcome, err)  # rejected, or postponed (a temporary refusal)
                outcome.ledger.creation_refused(upsert.email_hash)
            continue
        member = confirmed.get(key)
        if member is None:
            # Neither confirmed nor refused: ask again on the single path rather than guess.
            retry_singly.append(i)
            continue
        outcome.ledger.batched(
            upsert.email_hash,
            member,
            plan.desired.fields_hash if plan.desired else None,
            tag_op.active if tag_op else (),
        )
        if tag_op is not None and tag_op.inactive:
            # Batch subscribe can only add tags; removals take the tags endpoint.
            follow_ups.append((i, (UpdateTags(upsert.email_hash, (), tag_op.inactive),)))
    return retry_singly, follow_ups
