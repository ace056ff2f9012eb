"""Which members an account's concurrent passes are working on.

An account runs several passes at once (a bulk import needs ~10 batch calls in flight to reach
Mailchimp's limit). Two passes must never plan the same member: each plans from the ledger as it
read it, and the other may be about to change it (contacts sharing an address, email changes).
A pass claims its members after reading its facts; if another pass holds one of them, or
released one since the facts were read, it waits and reads again."""

from __future__ import annotations

import asyncio
from collections import deque


class MembersInFlight:
    # Releases remembered, to tell whether a pass's facts went stale while it read them. A pass
    # reads for a few releases of the account's other passes at most; a longer gap only makes
    # it read again. Each entry holds a pass's hashes (~500): 1,000 of them were ~40 MB.
    def __init__(self, history: int = 100) -> None:
        self._busy: set[str] = set()
        self._epoch = 0
        self._released: deque[tuple[int, frozenset[str]]] = deque(maxlen=history)
        self._changed = asyncio.Condition()

    @property
    def epoch(self) -> int:
        """Take this before reading facts; hand it to `try_acquire`."""
        return self._epoch

    def _released_since(self, epoch: int, hashes: set[str]) -> bool:
        if epoch == self._epoch:
            return False
        if not self._released or self._released[0][0] > epoch + 1:
            return True  # history too short to tell: assume the facts are stale
        return any(e > epoch and hashes & released for e, released in self._released)

    async def try_acquire(self, hashes: set[str], read_at: int) -> bool:
        """Claim `hashes` for a pass whose facts were read at `read_at`.

        False means the facts may be stale (another pass held or changed one of these members):
        read them again and retry."""
        async with self._changed:
            waited = False
            while hashes & self._busy:
                waited = True
                await self._changed.wait()
            if waited or self._released_since(read_at, hashes):
                return False
            self._busy |= hashes
            return True

    async def release(self, hashes: set[str]) -> None:
        async with self._changed:
            self._busy -= hashes
            self._epoch += 1
            self._released.append((self._epoch, frozenset(hashes)))
            self._changed.notify_all()
