"""A change of a connection's state is recorded once, however many of the account's concurrent
passes end by it: the conditional UPDATE of `mcsync.worker.health` decides, by its row count,
which pass logs it and writes the health event (real PostgreSQL, passes truly concurrent)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest
from psycopg_pool import AsyncConnectionPool
from structlog.testing import capture_logs

from mcsync.mailchimp.errors import ConnectionLevelError
from mcsync.worker.backoff import MAX_ATTEMPTS, Backoff
from mcsync.worker.gate import AccountGate
from mcsync.worker.health import ConnectionHealth
from mcsync.worker.metrics import Metrics
from mcsync.worker.store import WorkerStore
from mcsync.worker.types import Account, Event, Outcomes
from tests.e2e.failures.conftest import connection_of
from tests.support.harness import SyncHarness

PASSES = 4


def _account(h: SyncHarness, user: Any) -> Account:
    return Account.from_row(connection_of(h, user))


async def _refused(_: object = None) -> None:
    raise ConnectionLevelError("API Key Invalid", "token revoked", status=401)


async def _gate_with(error: type[Exception] | None) -> AccountGate:
    gate = AccountGate(1)
    if error is not None:
        with pytest.raises(error):
            await gate.call(_refused)
    return gate


def _spent_last_attempt(account: Account) -> tuple[Outcomes, list[tuple[int, int]]]:
    """A pass whose row spent its fifth attempt on a 503."""
    event = Event(1, uuid4(), "upsert", None, 1, MAX_ATTEMPTS - 1, datetime.now(UTC))
    out = Outcomes(retried=[(event, 1.0, "Service Unavailable (503)")])
    return out, [(event.id, MAX_ATTEMPTS)]


def _passes_end_together(
    h: SyncHarness, account: Account, *, connection_error: bool
) -> list[dict[str, Any]]:
    """PASSES passes of the account end at once, each by the same change of state."""

    async def run() -> list[dict[str, Any]]:
        async with AsyncConnectionPool(
            h.db_url, min_size=PASSES, max_size=PASSES, kwargs={"autocommit": True}
        ) as pool:
            health = ConnectionHealth(WorkerStore(pool, "test", 30.0), Backoff(), Metrics())
            gates = [
                await _gate_with(ConnectionLevelError if connection_error else None)
                for _ in range(PASSES)
            ]
            with capture_logs() as logs:
                await asyncio.gather(
                    *(
                        health.after_pass(account, *_spent_last_attempt(account), gate)
                        for gate in gates
                    )
                )
            return logs

    return asyncio.run(run())


def _events(h: SyncHarness, user: Any) -> list[dict[str, Any]]:
    return h.execute(
        "SELECT kind, repeats FROM mcsync.mailchimp_health_events WHERE user_id = %s",
        (user.user_id,),
    )


def test_concurrent_passes_spending_last_attempts_record_one_pause(fast: SyncHarness) -> None:
    user = fast.add_user()
    logs = _passes_end_together(fast, _account(fast, user), connection_error=False)
    assert connection_of(fast, user)["sync_status"] == "paused"
    assert _events(fast, user) == [{"kind": "paused", "repeats": 1}]
    assert [e["event"] for e in logs].count("sync_paused") == 1


def test_concurrent_passes_refused_the_token_record_one_error(fast: SyncHarness) -> None:
    user = fast.add_user()
    logs = _passes_end_together(fast, _account(fast, user), connection_error=True)
    row = connection_of(fast, user)
    assert (row["sync_status"], row["status_reason"]) == ("error", "token_revoked")
    assert _events(fast, user) == [{"kind": "error", "repeats": 1}]
    assert [e["event"] for e in logs].count("connection_error") == 1


def test_a_later_change_of_state_is_recorded_again(fast: SyncHarness) -> None:
    """Once is per change, not for ever: paused, resumed, paused again is three events."""
    user = fast.add_user()
    account = _account(fast, user)
    _passes_end_together(fast, account, connection_error=False)
    fast.execute(
        "UPDATE mcsync.mailchimp_connections SET sync_status = 'active', status_reason = NULL"
        " WHERE user_id = %s",
        (user.user_id,),
    )
    fast.execute(
        "INSERT INTO mcsync.mailchimp_health_events (user_id, kind, detail)"
        " VALUES (%s, 'resumed', 'probe answered')",
        (user.user_id,),
    )
    _passes_end_together(fast, account, connection_error=False)
    kinds = [e["kind"] for e in _events(fast, user)]
    assert sorted(kinds) == ["paused", "paused", "resumed"]
