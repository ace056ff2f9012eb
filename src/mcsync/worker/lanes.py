"""Postgres connections shared between one account's import and every other account's edits.

A worker serves many accounts over one connection pool. An import keeps up to `max_passes`
passes of one account busy, each wanting a connection for its reads, its write-ahead and its
record; served first come, first served, another user's single edit queued behind all of them
at every step (hundreds of milliseconds). So passes run in one of two lanes:

- `BULK`: the passes of an account that is working through an import or a large backlog. Bulk
  passes together hold at most `size - reserved` connections.
- `LIVE`: everything else (a few edits, the lease heartbeat, claims). A connection that frees
  goes to a waiting live pass before any bulk pass, and `reserved` connections are never taken
  by bulk passes, so a live edit does not wait for an import's statements.

Free connections were not enough: with seven bulk statements running, a live edit's statements
still shared two cores with them (Postgres and this process), and each of its ~10 steps took
tens of milliseconds (p50 ~450 ms an edit during a 50,000 import). So while live work is about
(a live pass held a connection within the last `live_window` seconds), bulk passes together
hold at most `bulk_while_live` connections: the import keeps its Mailchimp calls in flight
and runs its statements one (by default) at a time, and gets its full share back once no live
pass has come for `live_window`.

The lane is a context variable: an account's serving task sets it once it knows the account is
busy with bulk work, and the pass tasks it starts inherit it (asyncio copies the context into
each new task)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Literal

Lane = Literal["live", "bulk"]
LIVE: Lane = "live"
BULK: Lane = "bulk"

current_lane: ContextVar[Lane] = ContextVar("mcsync_lane", default=LIVE)


class Lanes:
    """Admission to `size` connections: live first, bulk capped at `size - reserved`, and at
    `bulk_while_live` while live passes are about (see the module's doc)."""

    def __init__(
        self,
        size: int,
        reserved: int,
        *,
        bulk_while_live: int = 1,
        live_window: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if size < 2 or not 1 <= reserved < size:
            raise ValueError("need size >= 2 and 1 <= reserved < size")
        if not 1 <= bulk_while_live <= size - reserved:
            # At least one: bulk passes must always be able to progress.
            raise ValueError("need 1 <= bulk_while_live <= size - reserved")
        self.size = size
        self.bulk_limit = size - reserved
        self.bulk_while_live = bulk_while_live
        self.live_window = live_window
        self.clock = clock
        self.in_use = 0
        self.bulk_in_use = 0
        self._live_passes = 0  # live connections held for passes (not housekeeping)
        self._live_seen = -float("inf")  # when a live pass last held a connection
        self._waiting: dict[Lane, deque[asyncio.Future[None]]] = {LIVE: deque(), BULK: deque()}

    @property
    def live_about(self) -> bool:
        """A live pass holds, awaits or recently held a connection."""
        return (
            self._live_passes > 0
            or bool(self._waiting[LIVE])
            or self.clock() - self._live_seen < self.live_window
        )

    def _may_enter(self, lane: Lane) -> bool:
        if self.in_use >= self.size:
            return False
        if lane == LIVE:
            return True
        if self._waiting[LIVE]:
            return False
        limit = self.bulk_while_live if self.live_about else self.bulk_limit
        return self.bulk_in_use < limit

    def _enter(self, lane: Lane) -> None:
        self.in_use += 1
        if lane == BULK:
            self.bulk_in_use += 1

    def _leave(self, lane: Lane) -> None:
        self.in_use -= 1
        if lane == BULK:
            self.bulk_in_use -= 1
        self._hand_over()

    def _hand_over(self) -> None:
        """Give freed room to the waiters that may have it, live ones first."""
        for lane in (LIVE, BULK):
            queue = self._waiting[lane]
            while queue and self._may_enter(lane):
                waiter = queue.popleft()
                if waiter.done():  # cancelled while waiting
                    continue
                self._enter(lane)
                waiter.set_result(None)

    @asynccontextmanager
    async def turn(self, *, housekeeping: bool = False) -> AsyncIterator[None]:
        """Hold one of the connections for the current lane (see `current_lane`).

        `housekeeping`: a live statement that is not an edit's (the worker's account claims,
        lease renewals); it goes first like any live one, but does not hold bulk passes back
        afterwards (the poll timer and heartbeats would otherwise slow every import)."""
        lane = current_lane.get()
        marks = lane == LIVE and not housekeeping
        queue = self._waiting[lane]
        if queue or not self._may_enter(lane):
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            queue.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._leave(lane)  # admitted just as we were cancelled: give it back
                raise
        else:
            self._enter(lane)
        if marks:
            self._live_passes += 1
            self._live_seen = self.clock()
        try:
            yield
        finally:
            if marks:
                self._live_passes -= 1
                self._live_seen = self.clock()
            self._leave(lane)
