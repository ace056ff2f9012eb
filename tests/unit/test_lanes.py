"""The worker's connection lanes: an import's passes never take the room kept for live edits,
and a freed connection goes to a waiting live pass before any bulk pass."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from mcsync.worker.lanes import BULK, LIVE, Lane, Lanes, current_lane


async def _hold(
    lanes: Lanes, lane: Lane, entered: list[str], name: str, release: asyncio.Event
) -> None:
    current_lane.set(lane)
    async with lanes.turn():
        entered.append(name)
        await release.wait()


def _start(
    lanes: Lanes, lane: Lane, entered: list[str], name: str, release: asyncio.Event
) -> asyncio.Task[None]:
    # Each pass runs in its own context, as the worker's tasks do.
    ctx = contextvars.copy_context()
    return asyncio.create_task(_hold(lanes, lane, entered, name, release), context=ctx)


def test_bulk_passes_leave_the_reserved_connections_to_live_edits() -> None:
    async def scenario() -> list[str]:
        lanes = Lanes(size=3, reserved=1)
        entered: list[str] = []
        release = asyncio.Event()
        tasks = [_start(lanes, BULK, entered, f"bulk{i}", release) for i in range(4)]
        await asyncio.sleep(0.01)
        assert entered == ["bulk0", "bulk1"]  # the third connection is kept back
        tasks.append(_start(lanes, LIVE, entered, "live", release))
        await asyncio.sleep(0.01)
        assert entered[-1] == "live"  # in at once, although two bulk passes were waiting
        release.set()
        await asyncio.gather(*tasks)
        assert lanes.in_use == 0 and lanes.bulk_in_use == 0
        return entered

    assert sorted(asyncio.run(scenario())) == ["bulk0", "bulk1", "bulk2", "bulk3", "live"]


def test_a_freed_connection_goes_to_a_waiting_live_pass_first() -> None:
    async def scenario() -> list[str]:
        lanes = Lanes(size=2, reserved=1)
        entered: list[str] = []
        first, rest = asyncio.Event(), asyncio.Event()
        held = [
            _start(lanes, BULK, entered, "bulk-holder", first),
            _start(lanes, LIVE, entered, "live-holder", rest),
        ]
        await asyncio.sleep(0.01)
        waiting = [
            _start(lanes, BULK, entered, "bulk-waiter", rest),
            _start(lanes, LIVE, entered, "live-waiter", rest),
        ]
        await asyncio.sleep(0.01)
        assert entered == ["bulk-holder", "live-holder"]
        first.set()  # the bulk holder leaves: the live waiter, queued later, goes first
        await asyncio.sleep(0.01)
        assert entered[2] == "live-waiter"
        rest.set()
        await asyncio.gather(*held, *waiting)
        return entered

    assert asyncio.run(scenario())[-1] == "bulk-waiter"


def test_a_pass_cancelled_while_waiting_gives_nothing_away() -> None:
    async def scenario() -> None:
        lanes = Lanes(size=2, reserved=1)
        entered: list[str] = []
        release = asyncio.Event()
        holder = _start(lanes, BULK, entered, "holder", release)
        await asyncio.sleep(0.01)
        waiter = _start(lanes, BULK, entered, "waiter", release)
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        release.set()
        await holder
        assert entered == ["holder"] and lanes.in_use == 0 and lanes.bulk_in_use == 0

    asyncio.run(scenario())


def test_bulk_passes_take_one_connection_while_live_edits_are_about() -> None:
    """An import's statements run one at a time while other accounts' edits come (so each
    edit's statements do not share the cores with seven of them), and take their full share
    again once no live pass has held a connection for `live_window`."""

    async def scenario() -> None:
        now = [100.0]
        lanes = Lanes(size=6, reserved=2, bulk_while_live=1, live_window=0.5, clock=lambda: now[0])
        entered: list[str] = []
        live_done, bulk_done = asyncio.Event(), asyncio.Event()
        live = _start(lanes, LIVE, entered, "live", live_done)
        await asyncio.sleep(0.01)
        bulk = [_start(lanes, BULK, entered, f"bulk{i}", bulk_done) for i in range(4)]
        await asyncio.sleep(0.01)
        assert entered == ["live", "bulk0"]  # a live pass holds a connection: one bulk pass
        live_done.set()
        await live
        await asyncio.sleep(0.01)
        assert lanes.live_about and lanes.bulk_in_use == 1  # it just left: still about
        now[0] += 0.6  # no live pass for longer than the window
        assert not lanes.live_about
        bulk_done.set()  # bulk0 leaves and hands its room over: the others enter together
        await asyncio.gather(*bulk)
        assert entered[2:] == ["bulk1", "bulk2", "bulk3"]
        assert lanes.in_use == 0 and lanes.bulk_in_use == 0

    asyncio.run(scenario())


def test_bulk_passes_take_their_full_share_when_no_live_edit_comes() -> None:
    async def scenario() -> None:
        lanes = Lanes(size=6, reserved=2, bulk_while_live=1, live_window=0.5)
        entered: list[str] = []
        release = asyncio.Event()
        bulk = [_start(lanes, BULK, entered, f"bulk{i}", release) for i in range(5)]
        await asyncio.sleep(0.01)
        assert lanes.bulk_in_use == 4 and len(entered) == 4  # size - reserved
        release.set()
        await asyncio.gather(*bulk)

    asyncio.run(scenario())


def test_bulk_passes_always_keep_at_least_one_connection() -> None:
    with pytest.raises(ValueError):
        Lanes(size=4, reserved=1, bulk_while_live=0)


def test_housekeeping_statements_do_not_hold_bulk_passes_back() -> None:
    """The worker's account claims and lease renewals go first like live edits, but the poll
    timer and heartbeats would otherwise keep an import at one connection for good."""

    async def scenario() -> None:
        lanes = Lanes(size=6, reserved=2, bulk_while_live=1, live_window=60.0)
        async with lanes.turn(housekeeping=True):
            assert not lanes.live_about
        assert not lanes.live_about
        entered: list[str] = []
        release = asyncio.Event()
        bulk = [_start(lanes, BULK, entered, f"bulk{i}", release) for i in range(4)]
        await asyncio.sleep(0.01)
        assert lanes.bulk_in_use == 4
        release.set()
        await asyncio.gather(*bulk)
        async with lanes.turn():  # an edit's statement (the default lane is live)
            assert lanes.live_about
        assert lanes.live_about  # for live_window after it

    asyncio.run(scenario())
