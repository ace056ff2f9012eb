"""A connection's health: throttled accounts held back, failures counted toward a pause, a
revoked token stopping everything until the user reconnects, and a paused account probed.

The state machine, per connection (`mailchimp_connections.sync_status`):

    active --5 failed attempts of a row--> paused --probe answers--> active
    active/paused --401, a 403 with a body--> error (until the user reconnects)
    active/paused --token stored unbound, by an older mcsync--> paused (probing until bound)
    active/paused --token no configured key decrypts--> paused (probing until the key is back)
    active/paused --forged dc, a token copied from another user--> error (nothing is sent)

Each state but active has a reason (`status_reason`: see `unusable_state`, REVOKED,
"failures"), shown by `mcsync status`; a change of state is logged once, a probe that finds
nothing changed is not.

Throttling never counts as a failure: the whole account waits, nobody's attempts are spent.
What each Mailchimp error means is `mcsync.mailchimp.errors.disposition`; every statement is
a named one of `mcsync.queries`, run through `WorkerStore`."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from mcsync.connection_states import PAUSED_NOTICE, REVOKED, unusable_state
from mcsync.crypto import EncryptionKeyError
from mcsync.logging import get_logger
from mcsync.mailchimp.client import MailchimpClient
from mcsync.mailchimp.endpoints import InvalidDataCenter
from mcsync.mailchimp.errors import MailchimpError, TransientError, disposition
from mcsync.worker.apply import AccountGate
from mcsync.worker.backoff import MAX_ATTEMPTS, Backoff
from mcsync.worker.metrics import Metrics
from mcsync.worker.store import Account, Outcomes, WorkerStore

log = get_logger("mcsync.worker")

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
        self, account: Account, exc: InvalidDataCenter | EncryptionKeyError
    ) -> None:
        """No call may be made for this account (found before any row was claimed, nothing
        sent). A state with a reason (`unusable_state`), logged once per change of state: the
        ones the operator can fix are paused and probed with backoff like failures (so a
        removed key costs one decrypt per probe, not a loop), the others wait for a reconnect."""
        user_id, error = account.user_id, str(exc)
        status, reason = unusable_state(exc)
        if status == "paused":
            probe_in = self.backoff.retry(account.consecutive_failures + 1)
            await self.store.pause_unusable(
                user_id, PAUSED_NOTICE, error, reason=reason, probe_in=probe_in
            )
        else:
            await self.store.mark_connection_error(user_id, PAUSED_NOTICE, error, reason=reason)
        if (account.sync_status, account.status_reason) != (status, reason):
            # "reason (error)", not "reason: error": `token_…: <text>` reads as a secret to the
            # redaction, which would cut the sentence's first word out.
            await self.store.record_health_event(user_id, status, f"{reason} ({error})")
            event = "token_unbound" if reason == "token_unbound" else "connection_unusable"
            _log(user_id).error(
                event, outcome=status, sync_status=status, reason=reason, error=error
            )

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
        await self.store.record_health_event(account.user_id, "resumed", "probe answered")
        _log(account.user_id).info(
            "sync_resumed", outcome="active", previous_reason=account.status_reason
        )

    async def _probe_failed(self, account: Account, exc: MailchimpError) -> None:
        kind = disposition(exc)
        if kind == "connection":
            if not await self.store.mark_connection_error(
                account.user_id, PAUSED_NOTICE, str(exc), reason=REVOKED, event_detail=str(exc)
            ):
                return
            _log(account.user_id).warning(
                "connection_error", outcome="error", reason=REVOKED, error=str(exc)[:200]
            )
            return
        if kind == "throttled":  # busy, not down: ask again soon, and don't count it
            assert isinstance(exc, TransientError)
            probe_in = self.backoff.throttled(exc.retry_after)
            await self.store.count_throttled(account.user_id)
        else:
            probe_in = self.backoff.retry(account.consecutive_failures + 1)
            await self.store.record_failure(account.user_id, str(exc))
        await self.store.reschedule_probe(account.user_id, probe_in, str(exc))
        await self.store.record_health_event(account.user_id, "probe_failed", str(exc))
        _log(account.user_id).info("probe", outcome="still_down", next_probe_s=round(probe_in, 1))

    async def after_pass(
        self, account: Account, out: Outcomes, retried: list[tuple[int, int]], gate: AccountGate
    ) -> None:
        """Record what a pass says about the connection: lost, failing, paused or synced."""
        user_id = account.user_id
        # A change of state is recorded (with its health event, in one transaction) and logged
        # by the pass whose UPDATE made it: the account's other passes, ending the same way,
        # find it made and say nothing.
        if gate.connection_error is not None:
            error = str(gate.connection_error)
            if not await self.store.mark_connection_error(
                user_id, PAUSED_NOTICE, error, reason=REVOKED, event_detail=error
            ):
                return
            _log(user_id).warning(
                "connection_error", outcome="error", reason=REVOKED, error=error[:200]
            )
            return
        if out.retried:
            await self.store.record_failure(user_id, out.retried[-1][2])
        if any(attempts >= MAX_ATTEMPTS for _, attempts in retried):
            paused = await self.store.pause_connection(
                user_id, PAUSED_NOTICE, out.retried[-1][2], probe_in=self.backoff.retry(1)
            )
            gate.pause()  # the account's other passes start no further call
            if not paused:
                return
            _log(user_id).warning(
                "sync_paused",
                outcome="paused",
                reason="failures",
                attempt=MAX_ATTEMPTS,
                error=out.retried[-1][2][:200],
            )
        elif out.completed and not out.retried:
            await self.store.mark_synced(user_id)
