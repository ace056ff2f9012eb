"""The account's gate (`mcsync.worker.gate`): the in-flight cap its passes share, and the four
reasons that stop every pass from starting another call, each set by one named event."""

from __future__ import annotations

import asyncio

import pytest

from mcsync.mailchimp.errors import ConnectionLevelError, NotFoundError, TransientError
from mcsync.worker.gate import AccountGate, Deferred


async def _fails(error: Exception) -> None:
    raise error


async def _answers() -> str:
    return "answered"


def _run(gate: AccountGate, error: Exception | None = None) -> str | None:
    async def go() -> str | None:
        if error is None:
            return await gate.call(_answers)
        await gate.call(_fails, error)
        return None

    return asyncio.run(go())


def test_an_open_gate_calls() -> None:
    gate = AccountGate(2)
    assert _run(gate) == "answered"
    assert not gate.stopped


@pytest.mark.parametrize(
    ("stop", "flag"),
    [("pause", "paused"), ("lose_lease", "lease_lost")],
)
def test_a_named_event_stops_every_call(stop: str, flag: str) -> None:
    gate = AccountGate(2)
    getattr(gate, stop)()
    assert getattr(gate, flag) and gate.stopped
    with pytest.raises(Deferred):
        _run(gate)


def test_the_gate_notes_the_first_throttle_and_a_lost_connection() -> None:
    gate = AccountGate(2)
    first = TransientError("Too Many Requests", status=429, throttled=True, retry_after=3.0)
    with pytest.raises(TransientError):
        _run(gate, first)
    assert gate.throttled is first and gate.stopped
    with pytest.raises(Deferred):  # stopped: the next call is never made
        _run(gate)

    lost = AccountGate(2)
    refused = ConnectionLevelError("API Key Invalid", status=401)
    with pytest.raises(ConnectionLevelError):
        _run(lost, refused)
    assert lost.connection_error is refused and lost.stopped


def test_a_member_error_does_not_stop_the_account() -> None:
    gate = AccountGate(2)
    with pytest.raises(NotFoundError):
        _run(gate, NotFoundError("Resource Not Found", status=404))
    assert not gate.stopped


@pytest.mark.parametrize("flag", ["throttled", "connection_error", "paused", "lease_lost"])
def test_the_reasons_change_only_through_the_named_events(flag: str) -> None:
    with pytest.raises(AttributeError):
        setattr(AccountGate(2), flag, True)
