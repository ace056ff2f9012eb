"""Issue 17, item 5: switching audiences is no amplifier. An audience change while a full sync
is pending queues nothing more (the pending sync goes to the audience chosen last), and a user
may change the audience only a few times an hour, like Sync Now's limit."""

from __future__ import annotations

import uuid

from mcsync.connections import AUDIENCE_CHANGES_PER_WINDOW
from tests.e2e.web.conftest import WebHarness


def _queue_ids(web: WebHarness, user: uuid.UUID) -> set[int]:
    rows = web.rows("SELECT id FROM mcsync.mailchimp_sync_queue WHERE user_id = %s", (user,))
    return {r["id"] for r in rows}


def test_flipping_audiences_requeues_nothing_and_is_limited(web: WebHarness) -> None:
    user = uuid.uuid4()
    for i in range(40):
        web.add_contact(user, f"c{i}@clientmail.io", first_name=f"C{i}")
    account = web.account("Coach", [{"id": "one", "name": "One"}, {"id": "two", "name": "Two"}])
    web.connect(user, account["account_id"])
    h = web.headers(user)
    first = web.client.put("/api/audience", headers=h, json={"audience_id": "one"})
    assert first.status_code == 200
    queued = _queue_ids(web, user)
    assert len(queued) == 40  # the first choice's full sync, pending

    # Flips while that sync is pending: the same 40 rows stay queued (no delete and requeue of
    # every contact per flip), until the limit answers 429 with a Retry-After.
    answers, current = [], "one"
    for _ in range(AUDIENCE_CHANGES_PER_WINDOW + 3):
        choice = "two" if current == "one" else "one"  # always a change
        r = web.client.put("/api/audience", headers=h, json={"audience_id": choice})
        answers.append(r.status_code)
        current = choice if r.status_code == 200 else current
        assert _queue_ids(web, user) == queued
        if r.status_code == 429:
            assert int(r.headers["Retry-After"]) > 0 and "audience" in r.json()["detail"]
    assert answers == [200] * AUDIENCE_CHANGES_PER_WINDOW + [429] * 3
    # The last change that went through decides; the pending sync lands there, and only there.
    [(chosen,)] = [
        (r["audience_id"],)
        for r in web.rows(
            "SELECT audience_id FROM mcsync.mailchimp_connections WHERE user_id = %s", (user,)
        )
    ]
    assert chosen == ("one" if AUDIENCE_CHANGES_PER_WINDOW % 2 == 0 else "two")
    web.sync.drain()
    assert len(web.members(chosen)) == 40
    other = "two" if chosen == "one" else "one"
    assert web.members(other) == {}
