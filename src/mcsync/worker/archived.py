"""The audience's archived members, as the batch subscribe guard reads them: one listing
shared by the account's passes, never older than the pass that asks.

Whether a batch `status_if_new` brings an archived member back is unrecorded (the emulator's
`batch_status_if_new_unarchives` plays both answers), so a member archived by hand, which the
ledger cannot know, must never reach a batch subscribe (docs/design.md, "Batch subscribe leaves
archived members out"). Each pass that batches used to list the archived members itself, just
before its batch: with ten passes in flight during an import, ten listings of the same set.

`ArchivedListing` keeps that guarantee and shares the work: a pass gets the answer of a
listing that *started after it asked* (so a member archived by hand before the pass reached its
batch is in it, exactly as with a listing of its own), and every pass that asks while one
listing is running shares the next one. At most one listing runs per account at a time, so
the calls it costs are bounded by its round trip, not by the number of passes; what mcsync
archived itself the ledger already knows (`MemberApplier.known_archived`), without a listing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

__all__ = ["ARCHIVED_PAGE_SIZE", "ArchivedListing", "list_archived"]

ARCHIVED_PAGE_SIZE = 1000


class ArchivedListing:
    """One account's archived-member listings, coalesced: `archived()` answers from a listing
    that started after the call, shared with every caller waiting for the same one."""

    def __init__(self, list_once: Callable[[], Awaitable[set[str]]]) -> None:
        self._list_once = list_once
        self._running: asyncio.Task[set[str]] | None = None  # the listing under way
        self._next: asyncio.Task[set[str]] | None = None  # asked for, starts after _running
        self.listings = 0  # how many listings started (for tests and logs)

    async def archived(self) -> set[str]:
        """The hashes of the audience's archived members, listed after this call began.
        Raises what the listing raised (each caller then decides; the pass sends its members
        singly)."""
        if self._next is None:
            self._next = asyncio.ensure_future(self._after(self._running))
        # Shielded: a caller cancelled while waiting does not cancel the others' listing.
        return set(await asyncio.shield(self._next))

    async def _after(self, previous: asyncio.Task[set[str]] | None) -> set[str]:
        if previous is not None:
            # Its callers asked before ours: its outcome is theirs, not ours.
            with contextlib.suppress(BaseException):
                await previous
        # From here on, callers wait for a listing after this one (this one may have started
        # before they asked).
        self._running, self._next = self._next, None
        self.listings += 1
        try:
            return await self._list_once()
        finally:
            if self._running is asyncio.current_task():
                self._running = None


async def list_archived(
    list_page: Callable[[int], Awaitable[tuple[list[str], int]]],
) -> set[str]:
    """Every archived member's hash, page by page: `list_page(offset)` answers one page's
    hashes and the total (one call per 1,000 archived members)."""
    out: set[str] = set()
    offset = 0
    while True:
        ids, total = await list_page(offset)
        out.update(ids)
        offset += len(ids)
        if not ids or offset >= total:
            return out
