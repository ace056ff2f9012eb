"""The batch guard's archived listing, shared by an account's passes
(`mcsync.worker.archived`): every pass gets a listing that started after it asked, and the
passes that ask while one runs share the next one."""

from __future__ import annotations

import asyncio

import pytest

from mcsync.worker.archived import ArchivedListing, list_archived


class Audience:
    """The archived set as Mailchimp holds it; each listing reads it when it starts and
    answers when released (so the test decides what happens in between)."""

    def __init__(self) -> None:
        self.archived: set[str] = set()
        self.started = 0
        self.release = asyncio.Event()

    async def list_once(self) -> set[str]:
        self.started += 1
        seen = set(self.archived)
        await self.release.wait()
        return seen


def test_a_pass_sees_every_archive_made_before_it_asked() -> None:
    async def scenario() -> None:
        audience = Audience()
        listing = ArchivedListing(audience.list_once)
        first = asyncio.ensure_future(listing.archived())
        await asyncio.sleep(0.01)  # the first listing is running (it has read the set)
        audience.archived.add("ann")  # archived by hand, after that listing read
        second = asyncio.ensure_future(listing.archived())
        third = asyncio.ensure_future(listing.archived())
        await asyncio.sleep(0.01)
        audience.release.set()
        assert await first == set()
        # The first listing began before they asked: they share the next one, which sees ann.
        assert await second == {"ann"} and await third == {"ann"}
        assert audience.started == listing.listings == 2

    asyncio.run(scenario())


def test_passes_asking_together_share_one_listing() -> None:
    async def scenario() -> None:
        audience = Audience()
        audience.archived.add("bob")
        listing = ArchivedListing(audience.list_once)
        asks = [asyncio.ensure_future(listing.archived()) for _ in range(10)]
        await asyncio.sleep(0.01)
        audience.release.set()
        assert [await a for a in asks] == [{"bob"}] * 10
        assert audience.started == 1
        # A later ask, with nothing running, lists again.
        assert await listing.archived() == {"bob"} and audience.started == 2

    asyncio.run(scenario())


def test_a_failed_listing_fails_its_callers_only() -> None:
    async def scenario() -> None:
        calls = 0

        async def flaky() -> set[str]:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.01)
            if calls == 1:
                raise RuntimeError("429")
            return {"cy"}

        listing = ArchivedListing(flaky)
        first = asyncio.ensure_future(listing.archived())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        second = asyncio.ensure_future(listing.archived())
        with pytest.raises(RuntimeError):
            await first
        assert await second == {"cy"}

    asyncio.run(scenario())


def test_list_archived_pages_until_the_total() -> None:
    pages = {0: (["a", "b"], 5), 2: (["c", "d"], 5), 4: (["e"], 5)}
    asked: list[int] = []

    async def page(offset: int) -> tuple[list[str], int]:
        asked.append(offset)
        return pages[offset]

    assert asyncio.run(list_archived(page)) == {"a", "b", "c", "d", "e"}
    assert asked == [0, 2, 4]
