"""A connection's health: throttled accounts held back, failures counted toward a pause, a
revoked token stopping everything until the user reconnects, and a paused account probed.

The state machine, per connection (`mailchimp_connections.sync_status`):

    active --5 failed attempts of a row--> paused --probe answers--> active
    active/paused --401, a 403 with a body--> error (until the user reconnects)
    active/paused --token stored unbound, by an older mcsync--> paused (probing until bound)
    active/paused --forged dc, a token copied from another user--> error (nothing is sent)

Throttling never counts as a failure: the whole account waits, nobody's attempts are spent.
What each Mailchimp error means is `mcsync.mailchimp.errors.disposition`; every statement is
a named one of `mcsync.queries`, run through `WorkerStore`."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from mcsync.crypto import TokenBindingError, UnboundTokenError
from mcsync.logging import get_logger
from mcsync.mailchimp.client import MailchimpClient
from mcsync.mailchimp.endpoints import InvalidDataCenter
from mcsync.mailchimp.errors import MailchimpError, TransientError, disposition
from mcsync.worker.apply import AccountGate
from mcsync.worker.backoff import MAX_ATTEMPTS, Backoff
from mcsync.worker.metrics import Metrics
from mcsync.worker.store import Account, Outcomes, WorkerStore

log = get_logger("mcsync.worker")

# What the user sees (the widget's notice) while their connection is paused or in error.
PAUSED_NOTICE = "Heads up—email sync is paused right now. Your contacts are still safe."

_PROBE_OUTCOMES = {"ok", "throttled", "connection_error"}  # anything else: "failed"


def _log(user_id: UUID) -> Any:
    """The log every health event goes to, naming the connection's user (and nothing secret)."""
    return log.bind(user_id=str(user_id))


class ConnectionHealth:
    """Decides and records the health of the connections one worker serves."""

    def __init__(self, store: WorkerStore, backoff: Backoff, metrics: Metrics) -> None:
        self.store = store
        self.backoff = backoff
        self.metrics = metrics

    async def hold_back(self, account: Account, throttled: TransientError) -> None:
        """Throttled: hold back the whole account (not only the rows that hit the wall), once
        per episode, without spending anyone's attempts."""
        delay = self.backoff.throttled(throttled.retry_after)
        await self.store.hold_back(account.user_id, delay)
        _log(account.user_id).info(
            "account_throttled", outcome="throttled", defer_s=round(delay, 2)
        )

    async def unusable(
        self, account: Account, exc: InvalidDataCenter | TokenBindingError
    ) -> None:
        """No call may be made for this row (found before any row was claimed, nothing sent)."""
        user_id, error = account.user_id, str(exc)
        if isinstance(exc, UnboundTokenError):
            # Stored by an older mcsync: the operator binds it (`mcsync rotate-keys`). Paused
            # meanwhile, probing as after failures, so it resumes by itself once bound.
            probe_in = self.backoff.retry(account.consecutive_failures + 1)
            await self.store.pause_connection(user_id, PAUSED_NOTICE, error, probe_in=probe_in)
            await self.store.reschedule_probe(user_id, probe_in, error)
            _log(user_id).error("token_unbound", error=error)
            return
        # A forged dc, a token copied from another user's row: stop until the user reconnects.
        await self.store.mark_connection_error(user_id, PAUSED_NOTICE, error)
        _log(user_id).error("connection_unusable", error=error)

    def observe_probe(self, op: str, outcome: str, seconds: float) -> None:
        """The probe's call, as metrics count it (`op` "probe")."""
        label = outcome if outcome in _PROBE_OUTCOMES else "failed"
        self.metrics.observe_call("probe", label, seconds)

    async def probe(self, account: Account, client: MailchimpClient) -> None:
        """One cheap call while paused: on success resume, else probe again later."""
        try:
            await client.get_audience(account.audience_id)
        except MailchimpError as exc:
            await self._probe_failed(account, exc)
            return
        await self.store.resume_connection(account.user_id)
        _log(account.user_id).info("sync_resumed", outcome="active")

    async def _probe_failed(self, account: Account, exc: MailchimpError) -> None:
        kind = disposition(exc)
        if kind == "connection":
            await self.store.mark_connection_error(account.user_id, PAUSED_NOTICE, str(exc))
            _log(account.user_id).warning("connection_error", outcome="error")
            return
        if kind == "throttled":  # busy, not down: ask again soon, and don't count it
            assert isinstance(exc, TransientError)
            probe_in = self.backoff.throttled(exc.retry_after)
            await self.store.count_throttled(account.user_id)
        else:
            probe_in = self.backoff.retry(account.consecutive_failures + 1)
            await self.store.record_failure(account.user_id, str(exc))
        await self.store.reschedule_probe(account.user_id, probe_in, str(exc))
        _log(account.user_id).info("probe", outcome="still_down", next_probe_s=round(probe_in, 1))

    async def after_pass(
        self, account: Account, out: Outcomes, retried: list[tuple[int, int]], gate: AccountGate
    ) -> None:
        """Record what a pass says about the connection: lost, failing, paused or synced."""
        user_id = account.user_id
        if gate.connection_error is not None:
            error = str(gate.connection_error)
            await self.store.mark_connection_error(user_id, PAUSED_NOTICE, error)
            _log(user_id).warning("connection_error", outcome="error", error=error[:200])
            return
        if out.retried:
            await self.store.record_failure(user_id, out.retried[-1][2])
        if any(attempts >= MAX_ATTEMPTS for _, attempts in retried):
            await self.store.pause_connection(
                user_id, PAUSED_NOTICE, out.retried[-1][2], probe_in=self.backoff.retry(1)
            )
            gate.pause()  # the account's other passes start no further call
            _log(user_id).warning("sync_paused", outcome="paused")
        elif out.completed and not out.retried:
            await self.store.mark_synced(user_id)
