"""What a pass's Mailchimp outcomes mean for its queue rows, links, rejections and ledger.

Pure: `collect_outcomes` maps each member's outcome back onto the queue rows it came from;
the store writes the result in one transaction."""

from __future__ import annotations

from collections import defaultdict
from uuid import UUID

from mcsync.mirror import LedgerMember, Plan, Rejection
from mcsync.worker.apply import AccountGate, MemberOutcome, Status
from mcsync.worker.backoff import Backoff
from mcsync.worker.store import Event, Facts, Outcomes

# Worst first: a row's fate is the worst fate of the members it touches.
_SEVERITY: list[Status] = [
    "done",
    "rejected",
    "postponed",
    "transient",
    "throttled",
    "deferred",
    "connection",
]


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
    for event in events:
        mine = by_contact.get(event.contact_id, [])
        worst = max((o.status for o in mine), key=_SEVERITY.index, default="done")
        if worst == "connection" or (worst == "deferred" and gate.throttled is None):
            # Not throttled: the account stopped (lost, paused, lease gone). Release the row
            # as it was, attempts unspent; it waits for the connection, not for a delay.
            out.released.append(event)
        elif worst in ("throttled", "deferred"):
            out.deferred.append(event)
        elif worst == "postponed":
            out.postponed.append(event)
        elif worst == "transient":
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
        confirmed.update(o.ledger)
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
