"""One pass over one Mailchimp account: claim its due contacts, plan, apply, record, repeat.

Also decides the account's health: failures count toward a pause, throttling does not, a
revoked token stops everything until the user reconnects, and a paused account is probed."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from dataclasses import dataclass
from functools import partial
from uuid import UUID

import httpx

from mcsync import queries
from mcsync.connections import PAUSED_NOTICE
from mcsync.crypto import TokenBindingError, TokenCipher, UnboundTokenError
from mcsync.logging import get_logger
from mcsync.mailchimp.client import MailchimpClient
from mcsync.mailchimp.endpoints import InvalidDataCenter, api_base
from mcsync.mailchimp.errors import ConnectionLevelError, MailchimpError, TransientError
from mcsync.mirror import LedgerMember, Plan, plan_member_ops, write_ahead_ledger
from mcsync.worker.apply import AccountGate, MemberApplier, MemberOutcome, apply_plans
from mcsync.worker.backoff import MAX_ATTEMPTS, backoff_delay, throttle_delay
from mcsync.worker.inflight import MembersInFlight
from mcsync.worker.metrics import Metrics
from mcsync.worker.store import Account, Event, Facts, Outcomes, WorkerStore

log = get_logger("mcsync.worker")

# Worst first: a row's fate is the worst fate of the members it touches.
_SEVERITY = ["done", "rejected", "transient", "throttled", "deferred", "connection"]


@dataclass(frozen=True)
class AccountSettings:
    api_url_template: str
    max_in_flight: int
    batch_threshold: int
    claim_size: int
    max_passes: int
    http_timeout: float
    backoff_scale: float = 1.0


class AccountWorker:
    def __init__(
        self,
        store: WorkerStore,
        cipher: TokenCipher,
        http: httpx.AsyncClient,
        settings: AccountSettings,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.cipher = cipher
        self.http = http
        self.settings = settings
        self.metrics = metrics or Metrics()

    def _client(self, account: Account) -> MailchimpClient:
        base = api_base(self.settings.api_url_template, account.dc)
        token = self.cipher.decrypt(account.access_token_encrypted, account.user_id)
        return MailchimpClient(base, token, http=self.http, timeout=self.settings.http_timeout)

    async def serve(self, account: Account) -> None:
        """Work the account until nothing is due, it is throttled, or it stops being usable."""
        try:
            self._client(account)  # unusable (dc, token)? fail here, before claiming a row
            if account.sync_status == "paused":
                await self._probe(account)
                return
            await self._run_passes(account)
        except UnboundTokenError as exc:
            # Stored by an older mcsync: the operator binds it (`mcsync rotate-keys`). Paused
            # meanwhile, probing as after failures, so it resumes by itself. Nothing was sent.
            params = {
                "user_id": account.user_id,
                "notice": PAUSED_NOTICE,
                "error": str(exc)[:500],
                "probe_in": backoff_delay(
                    account.consecutive_failures + 1, scale=self.settings.backoff_scale
                ),
            }
            await self.store.execute(queries.PAUSE_CONNECTION, params)
            await self.store.execute(queries.RESCHEDULE_PROBE, params)
            log.error("token_unbound", user_id=str(account.user_id), error=str(exc))
        except (InvalidDataCenter, TokenBindingError) as exc:
            # A row no call may be made for (a forged dc, a token copied from another
            # user's row): stop it until the user reconnects. Nothing was sent.
            await self.store.execute(
                queries.MARK_CONNECTION_ERROR,
                {"user_id": account.user_id, "notice": PAUSED_NOTICE, "error": str(exc)[:500]},
            )
            log.error("connection_unusable", user_id=str(account.user_id), error=str(exc))
        finally:
            await self.store.release_account(account.user_id)

    async def _run_passes(self, account: Account) -> None:
        """Keep up to `max_passes` passes of `claim_size` contacts going, all sharing one gate
        (so never more than `max_in_flight` calls), until nothing is due or a pass says stop."""
        gate = AccountGate(self.settings.max_in_flight)
        heartbeat = asyncio.create_task(self._heartbeat(account, gate))
        try:
            await self._keep_passes_going(account, gate)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _keep_passes_going(self, account: Account, gate: AccountGate) -> None:
        members = MembersInFlight()
        passes: set[asyncio.Task[bool]] = set()
        claimed: set[int] = set()
        stop = False
        failure: BaseException | None = None
        imports_left = account.has_bulk
        while True:
            if not stop and len(passes) < self.settings.max_passes:
                events = await self.store.claim_due_events(
                    account.user_id, self.settings.claim_size, exclude=claimed
                )
                if imports_left and len(events) < self.settings.claim_size:
                    # The queue runs low: turn the next slice of an import into queue rows.
                    chunk = self.settings.claim_size * self.settings.max_passes
                    imports_left = await self.store.expand_bulk(account.user_id, chunk) > 0
                    if imports_left and not events:
                        continue
                if events:
                    ids = {e.id for e in events}
                    claimed.update(ids)
                    task = asyncio.create_task(self._process(account, events, gate, members))
                    task.add_done_callback(partial(_forget_claim, claimed, ids))
                    passes.add(task)
                    continue
            if not passes:
                break
            done, passes = await asyncio.wait(passes, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.exception() is not None:
                    failure = failure or task.exception()
                    stop = True
                elif not task.result():
                    stop = True
        if gate.throttled is not None:
            await self._hold_back(account, gate.throttled)
        if failure is not None:
            raise failure

    async def _hold_back(self, account: Account, throttled: TransientError) -> None:
        """Throttled: hold back the whole account (not only the rows that hit the wall), once
        per episode, without spending anyone's attempts."""
        delay = throttle_delay(throttled.retry_after, scale=self.settings.backoff_scale)
        uid = {"user_id": account.user_id}
        await self.store.execute(queries.COUNT_THROTTLED, uid)
        await self.store.execute(
            queries.DEFER_USER_EVENTS, {**uid, "delay": delay, "owner": self.store.owner}
        )
        log.info(
            "account_throttled",
            user_id=str(account.user_id),
            outcome="throttled",
            defer_s=round(delay, 2),
        )

    async def _heartbeat(self, account: Account, gate: AccountGate) -> None:
        """Renew the account's and its rows' leases while passes run; if another worker has
        taken the account over (this one stalled past its lease), stop starting calls."""
        while True:
            await asyncio.sleep(self.store.lease_seconds / 4)
            try:
                if not await self.store.renew_account(account.user_id):
                    gate.lease_lost = True
                    log.warning("lease_lost", user_id=str(account.user_id), outcome="stopped")
                    return
            except Exception as exc:  # a blip; the next beat tries again well within the lease
                log.warning("lease_renew_failed", user_id=str(account.user_id), error=repr(exc))

    async def _probe(self, account: Account) -> None:
        """One cheap call while paused: on success resume, else probe again later."""
        client = self._client(account)
        scale = self.settings.backoff_scale
        started = time.perf_counter()
        try:
            await client.get_audience(account.audience_id)
        except ConnectionLevelError as exc:
            self.metrics.observe_call("probe", "connection_error", time.perf_counter() - started)
            await self.store.execute(
                queries.MARK_CONNECTION_ERROR,
                {"user_id": account.user_id, "notice": PAUSED_NOTICE, "error": str(exc)[:500]},
            )
            log.warning("connection_error", user_id=str(account.user_id), outcome="error")
            return
        except MailchimpError as exc:
            throttled = exc if isinstance(exc, TransientError) and exc.throttled else None
            self.metrics.observe_call(
                "probe", "throttled" if throttled else "failed", time.perf_counter() - started
            )
            if throttled is not None:  # busy, not down: ask again soon, and don't count it
                probe_in = throttle_delay(throttled.retry_after, scale=scale)
                await self.store.execute(queries.COUNT_THROTTLED, {"user_id": account.user_id})
            else:
                probe_in = backoff_delay(account.consecutive_failures + 1, scale=scale)
                await self.store.execute(
                    queries.RECORD_FAILURE, {"user_id": account.user_id, "error": str(exc)[:500]}
                )
            await self.store.execute(
                queries.RESCHEDULE_PROBE,
                {"user_id": account.user_id, "probe_in": probe_in, "error": str(exc)[:500]},
            )
            log.info(
                "probe",
                user_id=str(account.user_id),
                outcome="still_down",
                next_probe_s=round(probe_in, 1),
            )
            return
        self.metrics.observe_call("probe", "ok", time.perf_counter() - started)
        await self.store.execute(queries.RESUME_CONNECTION, {"user_id": account.user_id})
        await self.store.execute(queries.MAKE_USER_EVENTS_DUE, {"user_id": account.user_id})
        await self.store.execute(queries.NOTIFY, {})
        log.info("sync_resumed", user_id=str(account.user_id), outcome="active")

    async def _process(
        self, account: Account, events: list[Event], gate: AccountGate, members: MembersInFlight
    ) -> bool:
        started = time.perf_counter()
        while True:
            read_at = members.epoch
            facts = await self.store.load_facts(account, events)
            plan = plan_for(facts, account.double_optin)
            touched = plan.member_hashes()
            if await members.try_acquire(touched, read_at):
                break
        try:
            return await self._apply_and_record(account, events, gate, facts, plan, started)
        finally:
            await members.release(touched)

    async def _apply_and_record(
        self,
        account: Account,
        events: list[Event],
        gate: AccountGate,
        facts: Facts,
        plan: Plan,
        started: float,
    ) -> bool:
        written_ahead = write_ahead_ledger(plan.members, facts.ledger)
        new_links = {
            cid: h for cid, h in plan.links.items() if h is not None and h != facts.links.get(cid)
        }
        await self.store.write_ahead(account, written_ahead, new_links)
        applier = MemberApplier(
            self._client(account),
            account.audience_id,
            gate,
            facts.ledger,
            written_ahead=written_ahead,
            before_archive=partial(self.store.mark_archiving, account),
            user_id=str(account.user_id),
            metrics=self.metrics,
        )
        outcomes = await apply_plans(
            applier, plan.members, batch_threshold=self.settings.batch_threshold
        )
        out = collect_outcomes(
            events, facts, plan, outcomes, gate, scale=self.settings.backoff_scale
        )
        retried = await self.store.record(account, out)
        if retried is None:
            gate.lease_lost = True
            log.warning("lease_lost", user_id=str(account.user_id), outcome="not_recorded")
            return False
        await self._update_health(account, out, retried, gate)
        rejected = sum(1 for r in out.rejections if r["severity"] == "error")
        self.metrics.count_events("completed", len(out.completed) - rejected)
        self.metrics.count_events("rejected", rejected)
        self.metrics.count_events("retried", len(out.retried))
        self.metrics.count_events("deferred", len(out.deferred))
        self.metrics.count_events("released", len(out.released))
        log.info(
            "batch_done",
            user_id=str(account.user_id),
            events=len(events),
            completed=len(out.completed),
            retried=len(out.retried),
            deferred=len(out.deferred),
            rejected=rejected,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return not gate.stopped and not any(a >= MAX_ATTEMPTS for _, a in retried)

    async def _update_health(
        self, account: Account, out: Outcomes, retried: list[tuple[int, int]], gate: AccountGate
    ) -> None:
        uid = {"user_id": account.user_id}
        if gate.connection_error is not None:
            await self.store.execute(
                queries.MARK_CONNECTION_ERROR,
                {**uid, "notice": PAUSED_NOTICE, "error": str(gate.connection_error)[:500]},
            )
            log.warning(
                "connection_error",
                user_id=str(account.user_id),
                outcome="error",
                error=str(gate.connection_error)[:200],
            )
            return
        if out.retried:
            last = out.retried[-1][2]
            await self.store.execute(queries.RECORD_FAILURE, {**uid, "error": last[:500]})
        if any(attempts >= MAX_ATTEMPTS for _, attempts in retried):
            await self.store.execute(
                queries.PAUSE_CONNECTION,
                {
                    **uid,
                    "notice": PAUSED_NOTICE,
                    "error": out.retried[-1][2][:500],
                    "probe_in": backoff_delay(1, scale=self.settings.backoff_scale),
                },
            )
            gate.paused = True  # the account's other passes start no further call
            log.warning("sync_paused", user_id=str(account.user_id), outcome="paused")
        elif out.completed and not out.retried:
            await self.store.execute(queries.MARK_SYNCED, uid)


def _forget_claim(claimed: set[int], ids: set[int], _: object) -> None:
    claimed.difference_update(ids)


def plan_for(facts: Facts, double_optin: bool) -> Plan:
    return plan_member_ops(
        changed=facts.changed,
        deleted=facts.deleted,
        sharing=facts.sharing,
        links=facts.links,
        maybe_links=facts.maybe_links,
        ledger=facts.ledger,
        recency=facts.recency,
        double_optin=double_optin,
    )


def collect_outcomes(
    events: list[Event],
    facts: Facts,
    plan: Plan,
    outcomes: list[MemberOutcome],
    gate: AccountGate,
    *,
    scale: float = 1.0,
) -> Outcomes:
    """Map member outcomes back onto the queue rows (and the ledger) they came from."""
    out = Outcomes()
    # The ledger as confirmed; later outcomes of the same hash win (they ran after).
    confirmed: dict[str, LedgerMember | None] = {}
    for o in outcomes:
        confirmed.update(o.ledger)
    for email_hash, entry in confirmed.items():
        if entry is None:
            out.ledger_deletes.append(email_hash)
        else:
            out.ledger_upserts.append(entry)

    by_contact: dict[UUID, list[MemberOutcome]] = defaultdict(list)
    for o in outcomes:
        for cid in o.plan.contact_ids:
            by_contact[cid].append(o)
    planner_rejections = {r.contact_id: r for r in plan.rejections}
    emails = {c.id: c.email for c in facts.changed}
    throttle = gate.throttled

    for event in events:
        cid = event.contact_id
        mine = by_contact.get(cid, [])
        worst = max((o.status for o in mine), key=_SEVERITY.index, default="done")
        if worst == "connection":
            out.released.append(event)
            continue
        if worst in ("throttled", "deferred"):
            out.deferred.append(event)
            continue
        if worst == "transient":
            failed = next(o for o in mine if o.status == "transient")
            delay = backoff_delay(event.attempts + 1, scale=scale)
            out.retried.append((event, delay, str(failed.error)))
            continue
        out.completed.append(event)
        new_link = plan.links.get(cid)
        rejected = [o for o in mine if o.status == "rejected" and o.plan.email_hash == new_link]
        if cid in planner_rejections:
            r = planner_rejections[cid]
            out.rejections.append(_rejection(cid, r.email, "error", r.reason, r.field, None))
        elif rejected:
            err = rejected[0].error
            field = getattr(err, "field", None)
            detail = getattr(err, "detail", None)
            out.rejections.append(
                _rejection(cid, emails.get(cid), "error", rejected[0].reason, field, detail)
            )
            continue  # keep its link: the member it was synced as is still what Mailchimp has
        else:
            warnings = [w for o in mine for w in o.warnings]
            if warnings:
                reason, field = warnings[0]
                out.rejections.append(
                    _rejection(cid, emails.get(cid), "warning", reason, field, None)
                )
            else:
                out.cleared_rejections.append(cid)
        if new_link is None:
            out.unlinks.append(cid)
        else:
            out.links.append((cid, new_link, event.changed_at))
    if out.deferred:
        out.defer_seconds = throttle_delay(
            getattr(throttle, "retry_after", None) if throttle is not None else None,
            scale=scale,
        )
    return out


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
