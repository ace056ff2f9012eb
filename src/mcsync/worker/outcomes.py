"""What a pass's Mailchimp outcomes mean for its queue rows, links, rejections and ledger.

Pure: `collect_outcomes` maps each member's outcome back onto the queue rows it came from;
the store writes the result in one transaction. What happened to a member has one vocabulary
(`MemberStatus`); what it means for a queue row is one table (`ROW_FATE`)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal
from uuid import UUID

from mcsync.mirror import LedgerMember, Plan, Rejection
from mcsync.worker.backoff import Backoff
from mcsync.worker.types import Event, Facts, MemberOutcome, MemberStatus, Outcomes

if TYPE_CHECKING:
    from mcsync.worker.gate import AccountGate

# What becomes of a queue row (each is a list of `Outcomes`): done (its rejection or warning
# recorded, its link set); retried after a backoff, an attempt spent; deferred with the whole
# throttled account; postponed (a temporary refusal about that person); released as it was,
# attempts unspent, to wait for the connection rather than for a delay.
RowFate = Literal["completed", "retried", "deferred", "postponed", "released"]

# Worst first: a row's fate is the worst status of the members it touches.
SEVERITY: tuple[MemberStatus, ...] = (
    "connection",
    "deferred",
    "throttled",
    "transient",
    "postponed",
    "rejected",
    "done",
)

# The table: a row's worst member status -> its fate, (when the account was not throttled,
# when it was). A member never tried ("deferred") waits with a throttled account; otherwise
# the account stopped (connection lost, paused, lease gone) and the row is released.
ROW_FATE: dict[MemberStatus, tuple[RowFate, RowFate]] = {
    "done": ("completed", "completed"),
    "rejected": ("completed", "completed"),
    "postponed": ("postponed", "postponed"),
    "transient": ("retried", "retried"),
    "throttled": ("deferred", "deferred"),
    "deferred": ("released", "deferred"),
    "connection": ("released", "released"),
}


_DONE_FATE: dict[bool, RowFate] = {False: ROW_FATE["done"][0], True: ROW_FATE["done"][1]}


def worst_status(statuses: Iterable[MemberStatus]) -> MemberStatus:
    """The worst of a row's member statuses ("done" for a row that touches no member)."""
    return min(statuses, key=SEVERITY.index, default="done")


def row_fate(statuses: Iterable[MemberStatus], *, throttled: bool) -> RowFate:
    """What becomes of a queue row whose members ended as `statuses` (see `ROW_FATE`)."""
    when_not, when_throttled = ROW_FATE[worst_status(statuses)]
    return when_throttled if throttled else when_not


def collect_outcomes(
    events: list[Event],
    facts: Facts,
    plan: Plan,
    outcomes: list[MemberOutcome],
    gate: AccountGate,
    backoff: Backoff,
) -> Outcomes:
    """Map member outcomes back onto the queue rows (and the ledger) they came from."""
    out = Outcomes()
    _confirm_ledger(out, outcomes)
    by_contact: dict[UUID, list[MemberOutcome]] = defaultdict(list)
    for o in outcomes:
        for cid in o.plan.contact_ids:
            by_contact[cid].append(o)
    planner_rejections = {r.contact_id: r for r in plan.rejections}
    emails = {c.id: c.email for c in facts.changed}
    throttled = gate.throttled is not None
    for event in events:
        mine = by_contact.get(event.contact_id, [])
        if len(mine) == 1 and mine[0].status == "done":
            fate = _DONE_FATE[throttled]  # a contact alone at its member (an import's): no rank
        else:
            fate = row_fate((o.status for o in mine), throttled=throttled)
        if fate == "released":
            out.released.append(event)
        elif fate == "deferred":
            out.deferred.append(event)
        elif fate == "postponed":
            out.postponed.append(event)
        elif fate == "retried":
            failed = next(o for o in mine if o.status == "transient")
            out.retried.append((event, backoff.retry(event.attempts + 1), str(failed.error)))
        else:
            out.completed.append(event)
            _complete(out, event, plan, mine, planner_rejections.get(event.contact_id), emails)
    if out.postponed:
        out.postpone_seconds = backoff.postponed()
    if out.deferred:
        throttle = gate.throttled
        out.defer_seconds = backoff.throttled(throttle.retry_after if throttle else None)
    return out


def _confirm_ledger(out: Outcomes, outcomes: list[MemberOutcome]) -> None:
    """The ledger as Mailchimp confirmed it; later outcomes of a hash win (they ran after)."""
    confirmed: dict[str, LedgerMember | None] = {}
    for o in outcomes:
        confirmed.update(o.ledger.confirmed)
    for email_hash, entry in confirmed.items():
        if entry is None:
            out.ledger_deletes.append(email_hash)
        else:
            out.ledger_upserts.append(entry)


def _complete(
    out: Outcomes,
    event: Event,
    plan: Plan,
    mine: list[MemberOutcome],
    planner_rejection: Rejection | None,
    emails: dict[UUID, str | None],
) -> None:
    """A row whose members are done: its rejection or warning (or none), and its link."""
    cid = event.contact_id
    new_link = plan.links.get(cid)
    rejected = [o for o in mine if o.status == "rejected" and o.plan.email_hash == new_link]
    if planner_rejection is not None:
        r = planner_rejection
        out.rejections.append(_rejection(cid, r.email, "error", r.reason, r.field, None))
    elif rejected:
        err = rejected[0].error
        field = getattr(err, "field", None)
        detail = getattr(err, "detail", None)
        out.rejections.append(
            _rejection(cid, emails.get(cid), "error", rejected[0].reason, field, detail)
        )
        return  # keep its link: the member it was synced as is still what Mailchimp has
    else:
        warnings = [w for o in mine for w in o.warnings]
        if warnings:
            reason, field = warnings[0]
            out.rejections.append(_rejection(cid, emails.get(cid), "warning", reason, field, None))
        else:
            out.cleared_rejections.append(cid)
    if new_link is None:
        out.unlinks.append(cid)
    else:
        out.links.append((cid, new_link, event.changed_at))


def _rejection(
    contact_id: UUID,
    email: str | None,
    severity: str,
    reason: str,
    field: str | None,
    detail: str | None,
) -> dict[str, object]:
    return {
        "contact_id": str(contact_id),
        "email": email,
        "severity": severity,
        "reason": reason[:1000],
        "field": field,
        "detail": (detail or "")[:1000] or None,
    }
