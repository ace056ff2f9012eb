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

The lane is a context variable: an account's serving task sets it once it knows the account is
busy with bulk work, and the pass tasks it starts inherit it (asyncio copies the context into
each new task)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Literal

Lane = Literal["live", "bulk"]
LIVE: Lane = "live"
BULK: Lane = "bulk"

current_lane: ContextVar[Lane] = ContextVar("mcsync_lane", default=LIVE)


class Lanes:
    """Admission to `size` connections: live first, bulk capped at `size - reserved`."""

    def __init__(self, size: int, reserved: int) -> None:
        if size < 2 or not 1 <= reserved < size:
            raise ValueError("need size >= 2 and 1 <= reserved < size")
        self.size = size
        self.bulk_limit = size - reserved
        self.in_use = 0
        self.bulk_in_use = 0
        self._waiting: dict[Lane, deque[asyncio.Future[None]]] = {LIVE: deque(), BULK: deque()}

    def _may_enter(self, lane: Lane) -> bool:
        if self.in_use >= self.size:
            return False
        if lane == LIVE:
            return True
        return self.bulk_in_use < self.bulk_limit and not self._waiting[LIVE]

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
    async def turn(self) -> AsyncIterator[None]:
        """Hold one of the connections for the current lane (see `current_lane`)."""
        lane = current_lane.get()
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
        try:
            yield
        finally:
            self._leave(lane)
