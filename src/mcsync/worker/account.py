"""Serving one Mailchimp account: claim its due contacts, plan, apply, record, repeat.

This module schedules the passes (several at once per account, sharing one in-flight cap) and
keeps the account's lease alive; what a pass's outcomes mean for the queue is
`mcsync.worker.outcomes`, and what they mean for the connection is `mcsync.worker.health`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from uuid import UUID

from mcsync.config import Settings
from mcsync.crypto import EncryptionKeyError, TokenCipher
from mcsync.ledger import write_ahead_ledger
from mcsync.logging import get_logger, without_addresses
from mcsync.mailchimp.client import CallObserver, ClientFactory, MailchimpClient
from mcsync.mailchimp.endpoints import InvalidDataCenter
from mcsync.mailchimp.errors import MailchimpError
from mcsync.mirror import Plan, plan_member_ops
from mcsync.worker.apply import AccountGate, MemberApplier, apply_plans, list_archived_members
from mcsync.worker.archived import ArchivedListing
from mcsync.worker.backoff import MAX_ATTEMPTS, Backoff
from mcsync.worker.health import ConnectionHealth
from mcsync.worker.inflight import MembersInFlight
from mcsync.worker.lanes import BULK, current_lane
from mcsync.worker.metrics import Metrics
from mcsync.worker.outcomes import collect_outcomes
from mcsync.worker.store import Account, Event, Facts, Outcomes, WorkerStore

log = get_logger("mcsync.worker")

# How often each account's audience settings (double opt-in) are read again from Mailchimp, so
# a change made there is noticed without reconnecting. One GET per account per interval.
AUDIENCE_RECHECK_SECONDS = 3600.0


@dataclass(frozen=True)
class AccountSettings:
    """How hard one account is worked (see `Settings` for what each means)."""

    max_in_flight: int = 8
    batch_threshold: int = 20
    claim_size: int = 500
    max_passes: int = 10

    @classmethod
    def from_settings(cls, settings: Settings) -> AccountSettings:
        return cls(
            max_in_flight=settings.mcsync_max_in_flight,
            batch_threshold=settings.mcsync_batch_threshold,
            claim_size=settings.mcsync_claim_size,
            max_passes=settings.mcsync_max_passes,
        )


class AccountSession:
    """One account while this worker serves it: everything its concurrent passes share.

    It owns the gate (the in-flight cap and the reasons every pass stops starting calls), the
    members in flight (two passes never plan the same member), the queue rows claimed by
    passes still running (never claimed twice), the lane its passes take, whether an import is
    left to expand, and why the passes stop (a pass said so, or failed). Each is changed only
    through the named methods below; a fresh session is made each time the account is served."""

    def __init__(self, account: Account, max_in_flight: int) -> None:
        self.account = account
        self.gate = AccountGate(max_in_flight)
        self.members = MembersInFlight()
        self._claimed: set[int] = set()
        self._imports_left = account.has_bulk
        self._told_to_stop = False
        self._failure: BaseException | None = None
        # The audience's archived members, listed at most once at a time for all passes
        # (mcsync.worker.archived); set by the worker, which holds the Mailchimp client.
        self.archived: ArchivedListing | None = None

    @property
    def claimed(self) -> frozenset[int]:
        """The queue rows the running passes hold (a new claim leaves them out)."""
        return frozenset(self._claimed)

    @property
    def imports_left(self) -> bool:
        """Whether an import (mailchimp_sync_bulk rows) may still have contacts to expand."""
        return self._imports_left

    @property
    def stopping(self) -> bool:
        """No new pass starts: one said stop (the gate stopped its calls, or it spent a row's
        last attempt) or failed."""
        return self._told_to_stop

    @property
    def failure(self) -> BaseException | None:
        """The first error a pass raised (raised again once every pass has ended)."""
        return self._failure

    def claim(self, events: list[Event]) -> set[int]:
        """`events` taken by a new pass: their ids, to `forget_claim` when it ends."""
        ids = {e.id for e in events}
        self._claimed.update(ids)
        return ids

    def forget_claim(self, ids: set[int], _task: object = None) -> None:
        """A pass ended (its rows are recorded or released): a later claim may see them."""
        self._claimed.difference_update(ids)

    def take_bulk_lane(self) -> None:
        """Bulk work: the passes started from here on (which inherit the serving task's
        context) take the bulk lane, leaving room for other accounts' edits (see
        mcsync.worker.lanes)."""
        current_lane.set(BULK)

    def imports_expanded(self, rows: int) -> None:
        """An import's next slice became `rows` queue rows; none means it is all expanded."""
        self._imports_left = rows > 0

    def pass_ended(self, task: asyncio.Task[bool]) -> None:
        """A pass is done: one that failed, or answered False (stop), stops new passes."""
        if task.exception() is not None:
            self._failure = self._failure or task.exception()
            self._told_to_stop = True
        elif not task.result():
            self._told_to_stop = True

    def pause(self) -> None:
        """The connection is being paused: no pass starts another call (see AccountGate)."""
        self.gate.pause()

    def lose_lease(self) -> None:
        """Another worker holds the account now: no call, nothing recorded (see AccountGate)."""
        self.gate.lose_lease()


class AccountWorker:
    """Serves one leased account at a time (the worker runs one `serve` per account)."""

    def __init__(
        self,
        store: WorkerStore,
        cipher: TokenCipher,
        clients: ClientFactory,
        settings: AccountSettings,
        *,
        backoff: Backoff | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.cipher = cipher
        self.clients = clients
        self.settings = settings
        self.backoff = backoff or Backoff()
        self.metrics = metrics or Metrics()
        self.health = ConnectionHealth(store, self.backoff, self.metrics)
        self.clock = clock
        # When each account's audience settings were last read (by this worker process).
        self._audience_read: dict[UUID, float] = {}

    def _client(self, account: Account, observer: CallObserver | None = None) -> MailchimpClient:
        return self.clients.client(
            account.dc,
            self.cipher.decrypt(account.access_token_encrypted, account.user_id),
            observer=observer or self.metrics.observe_call,
            log_context={"user_id": str(account.user_id)},
        )

    async def serve(self, account: Account) -> None:
        """Work the account until nothing is due, it is throttled, or it stops being usable."""
        try:
            self._client(account)  # unusable (dc, token)? fail here, before claiming a row
            if account.sync_status == "paused":
                await self.health.probe(account, self._client(account, self.health.observe_probe))
                return
            account = await self.audience_settings(account)
            await self._run_passes(account)
        except (InvalidDataCenter, EncryptionKeyError) as exc:
            await self.health.unusable(account, exc)
        finally:
            await self.store.release_account(account.user_id)

    async def audience_settings(self, account: Account) -> Account:
        """The account with its audience's double opt-in setting as Mailchimp has it now, read
        again every AUDIENCE_RECHECK_SECONDS while this worker serves it (connecting read it
        first, so a fresh worker waits one interval too: its first calls are the sync's own);
        stored when it changed. The planner is handed the fact, never asks. A failed read
        changes nothing (the passes meet the error themselves)."""
        last = self._audience_read.setdefault(account.user_id, self.clock())
        if self.clock() - last < AUDIENCE_RECHECK_SECONDS:
            return account
        try:
            audience = await self._client(account).get_audience(account.audience_id)
        except MailchimpError:
            return account
        self._audience_read[account.user_id] = self.clock()
        if audience.double_optin == account.double_optin:
            return account
        await self.store.set_double_optin(account, audience.double_optin)
        log.info(
            "audience_settings_changed",
            user_id=str(account.user_id),
            double_optin=audience.double_optin,
        )
        return replace(account, double_optin=audience.double_optin)

    async def _run_passes(self, account: Account) -> None:
        """Keep up to `max_passes` passes of `claim_size` contacts going, all sharing one gate
        (so never more than `max_in_flight` calls), until nothing is due or a pass says stop."""
        session = AccountSession(account, self.settings.max_in_flight)
        # One archived listing at a time for all of this account's passes (see
        # mcsync.worker.archived): the passes that reach a batch meanwhile share the next one.
        session.archived = ArchivedListing(
            partial(list_archived_members, self._client(account), account.audience_id, session.gate)
        )
        heartbeat = asyncio.create_task(self._heartbeat(session))
        try:
            await self._keep_passes_going(session)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _keep_passes_going(self, session: AccountSession) -> None:
        account = session.account
        passes: set[asyncio.Task[bool]] = set()
        if session.imports_left:
            session.take_bulk_lane()  # here, in the serving task, not in the heartbeat's
        while True:
            if not session.stopping and len(passes) < self.settings.max_passes:
                events = await self.store.claim_due_events(
                    account.user_id, self.settings.claim_size, exclude=session.claimed
                )
                if len(events) >= self.settings.batch_threshold:
                    session.take_bulk_lane()
                if session.imports_left and len(events) < self.settings.claim_size:
                    # The queue runs low: turn the next slice of an import into queue rows.
                    chunk = self.settings.claim_size * self.settings.max_passes
                    session.imports_expanded(await self.store.expand_bulk(account.user_id, chunk))
                    if session.imports_left and not events:
                        continue
                if events:
                    ids = session.claim(events)
                    task = asyncio.create_task(self._process(session, events))
                    task.add_done_callback(partial(session.forget_claim, ids))
                    passes.add(task)
                    continue
            if not passes:
                break
            done, passes = await asyncio.wait(passes, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                session.pass_ended(task)
        if session.gate.throttled is not None:
            await self.health.hold_back(account, session.gate.throttled)
        if session.failure is not None:
            raise session.failure

    async def _heartbeat(self, session: AccountSession) -> None:
        """Renew the account's and its rows' leases while passes run; if another worker has
        taken the account over (this one stalled past its lease), stop starting calls."""
        user_id = session.account.user_id
        while True:
            await asyncio.sleep(self.store.lease_seconds / 4)
            try:
                if not await self.store.renew_account(user_id):
                    session.lose_lease()
                    log.warning("lease_lost", user_id=str(user_id), outcome="stopped")
                    return
            except Exception as exc:  # a blip; the next beat tries again well within the lease
                log.warning("lease_renew_failed", user_id=str(user_id), error=repr(exc))

    async def _process(self, session: AccountSession, events: list[Event]) -> bool:
        account, members = session.account, session.members
        started = time.perf_counter()
        while True:
            read_at = members.epoch
            facts = await self.store.load_facts(account, events)
            plan = plan_for(facts, account.double_optin)
            touched = plan.member_hashes()
            if await members.try_acquire(touched, read_at):
                break
        try:
            return await self._apply_and_record(session, events, facts, plan, started)
        finally:
            await members.release(touched)

    async def _apply_and_record(
        self,
        session: AccountSession,
        events: list[Event],
        facts: Facts,
        plan: Plan,
        started: float,
    ) -> bool:
        account, gate = session.account, session.gate
        written_ahead = write_ahead_ledger(plan.members, facts.ledger)
        new_links = {
            cid: h for cid, h in plan.links.items() if h is not None and h != facts.links.get(cid)
        }
        # Other queued contacts whose fields or tags this pass sends (mirror.borrowed_links).
        new_links.update(plan.maybe_links)
        await self.store.write_ahead(account, written_ahead, new_links)
        applier = MemberApplier(
            self._client(account),
            account.audience_id,
            gate,
            facts.ledger,
            written_ahead=written_ahead,
            before_archive=partial(self.store.mark_archiving, account),
            user_id=str(account.user_id),
            archived_listing=session.archived,
        )
        outcomes = await apply_plans(
            applier, plan.members, batch_threshold=self.settings.batch_threshold
        )
        out = collect_outcomes(events, facts, plan, outcomes, gate, self.backoff)
        if any(event.attempts + 1 >= MAX_ATTEMPTS for event, _, _ in out.retried):
            # This pass pauses the connection: from now on the account's other passes start
            # no call (their rows are released with their attempts), before any await lets
            # one slip out while the pause is being written.
            session.pause()
        retried = await self.store.record(account, out)
        if retried is None:
            session.lose_lease()
            log.warning("lease_lost", user_id=str(account.user_id), outcome="not_recorded")
            return False
        await self.health.after_pass(account, out, retried, gate)
        _log_contacts(account, out)
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


def _log_contacts(account: Account, out: Outcomes) -> None:
    """One line per contact whose change failed (with its `attempt` and when it is retried) or
    that Mailchimp refused: `contact_id` is the app's id, the address is never logged."""
    user_id = str(account.user_id)
    for event, delay, error in out.retried:
        log.warning(
            "contact_retry",
            user_id=user_id,
            contact_id=str(event.contact_id),
            op=event.op,
            attempt=event.attempts + 1,
            outcome="retried" if event.attempts + 1 < MAX_ATTEMPTS else "paused",
            retry_in_s=round(delay, 2),
            error=without_addresses(error)[:300],
        )
    for rejection in out.rejections:
        level = log.warning if rejection["severity"] == "error" else log.info
        level(
            "contact_rejected" if rejection["severity"] == "error" else "contact_partly_synced",
            user_id=user_id,
            contact_id=rejection["contact_id"],
            outcome=rejection["severity"],
            field=rejection["field"],
            reason=without_addresses(str(rejection["reason"]))[:300],
        )


def plan_for(facts: Facts, double_optin: bool) -> Plan:
    """The planner's answer for one pass's facts."""
    return plan_member_ops(
        changed=facts.changed,
        deleted=facts.deleted,
        sharing=facts.sharing,
        links=facts.links,
        maybe_links=facts.maybe_links,
        ledger=facts.ledger,
        recency=facts.recency,
        double_optin=double_optin,
        queued=facts.queued,
    )
