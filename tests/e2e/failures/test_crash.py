"""Crash safety: kill -9 mid-batch, several workers at once, Postgres restarted under a worker."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from mcsync.mirror import Contact, desired_members
from mcsync.rows import contact_from_row
from tests.e2e.failures.conftest import RestartablePostgres, WorkerProcess, connection_of
from tests.support.harness import SyncHarness, User, wait_until, wait_while_progressing


def contacts_of(h: SyncHarness, user: User) -> list[Contact]:
    return [
        contact_from_row(r)
        for r in h.execute(
            "SELECT * FROM mcsync.source_contacts WHERE user_id = %s", (user.user_id,)
        )
    ]


def assert_mirrored(h: SyncHarness, user: User) -> None:
    """The audience equals the mirror of the user's contacts, one member per address."""
    desired = desired_members(contacts_of(h, user))
    raw = h.admin.members(user.audience_id)
    counts = Counter(m["email_address"].lower() for m in raw)
    assert max(counts.values(), default=1) == 1, "a member is duplicated"
    present = {m["email_address"].lower(): m for m in raw if m["status"] != "archived"}
    assert set(present) == {d.email.lower() for d in desired.values()}
    for d in desired.values():
        m = present[d.email.lower()]
        assert m["merge_fields"]["FNAME"] == d.merge_fields["FNAME"], d.email
        assert {t.casefold() for t in d.tags} <= {t["name"].casefold() for t in m["tags"]}


def test_kill_9_mid_batch_then_restart_loses_nothing_and_duplicates_nothing(
    sync: SyncHarness, worker_process: Callable[..., WorkerProcess]
) -> None:
    user = sync.add_user()
    sync.execute(
        """INSERT INTO contacts (user_id, email, first_name, tags)
           SELECT %s, 'k' || g || '@coachmail.io', 'K' || g, ARRAY['import']
             FROM generate_series(1, 600) g""",
        (user.user_id,),
    )
    singles = [sync.add_contact(user, f"s{i}@coachmail.io", first_name="S") for i in range(15)]
    sync.admin.set_latency(per_call_ms=200, per_member_ms=3)  # a 500-member batch: ~1.7 s

    first = worker_process(sync).start()
    # Mid-flight: the first calls have reached Mailchimp but not all have answered.
    wait_until(lambda: len(sync.admin.members(user.audience_id)) > 0, timeout=20, interval=0.01)
    first.kill()
    assert first.proc is not None and first.proc.returncode == -9
    assert sync.queue(), "the kill came too late to prove anything"
    # Changes keep arriving while no worker runs.
    for i, cid in enumerate(singles[:5]):
        sync.update_contact(cid, first_name=f"S{i}", tags=["after-crash"])
    sync.delete_contact(singles[5])

    sync.admin.set_latency(per_call_ms=5, per_member_ms=0)
    second = worker_process(sync).start()
    wait_until(lambda: sync.queue() == [], timeout=30, interval=0.1)
    assert second.stop() == 0
    assert_mirrored(sync, user)
    gone = sync.members(user).get("s5@coachmail.io")
    assert gone is None or gone["status"] == "archived"
    assert connection_of(sync, user)["sync_status"] == "active"
    assert "Traceback" not in second.output()


_QUEUE_STATE = (
    "SELECT pg_catalog.count(*)::text || ':' || COALESCE(pg_catalog.sum(version), 0)"
    "::text AS state FROM mcsync.mailchimp_sync_queue"
)


def test_three_workers_share_accounts_without_overlap_or_breaking_the_in_flight_cap(
    sync: SyncHarness, worker_process: Callable[..., WorkerProcess]
) -> None:
    users = [sync.add_user() for _ in range(3)]
    ids: dict[Any, list[Any]] = {}
    for user in users:
        ids[user.user_id] = [
            sync.add_contact(user, f"m{i}@coachmail.io", first_name="v0") for i in range(40)
        ]
    sync.admin.set_latency(per_call_ms=40)
    workers = [worker_process(sync, MCSYNC_MAX_IN_FLIGHT="10").start() for _ in range(3)]
    # Per-contact order: a stream of edits to the same contacts while the workers run.
    for version in range(1, 6):
        for user in users:
            for cid in ids[user.user_id][:10]:
                sync.update_contact(cid, first_name=f"v{version}", tags=[f"t{version}"])
        time.sleep(0.15)
    # Done when the queue is empty; failed only if the workers stop making calls and the queue
    # stops changing for a minute (a loaded machine takes longer, it does not stall).
    wait_while_progressing(
        lambda: sync.queue() == [],
        lambda: (len(sync.admin.requests()), sync.execute(_QUEUE_STATE)[0]["state"]),
    )
    for w in workers:
        assert w.stop() == 0
    for user in users:
        assert_mirrored(sync, user)
        members = sync.members(user)
        assert all(
            members[f"m{i}@coachmail.io"]["merge_fields"]["FNAME"] == "v5" for i in range(10)
        )
        # mcsync set t1..t4 and removed them again: only the last one is left.
        assert {t["name"] for t in members["m0@coachmail.io"]["tags"]} == {"t5"}
    log = sync.admin.requests()
    # No fault was injected: a 429 can only mean an 11th simultaneous call for an account.
    assert [r for r in log if r["status"] == 429] == []
    assert sum(1 for r in log if r["path"].startswith("/3.0/")) > 100


def test_postgres_restart_under_a_live_worker_listener_reconnects_and_catches_up(
    restartable_pg: RestartablePostgres, emulator: Any
) -> None:
    h = SyncHarness(
        restartable_pg.url, emulator, mcsync_backoff_scale=0.01, mcsync_lease_seconds=2.0
    )
    h.settings.mcsync_poll_interval = 30.0  # only NOTIFY (a reconnected listener) is fast
    user = h.add_user()
    with h.live_worker():
        time.sleep(0.5)
        h.add_contact(user, "before@coachmail.io")
        wait_until(lambda: "before@coachmail.io" in h.members(user), timeout=5)

        restartable_pg.restart(down_seconds=1.0)
        # Changes made right after the restart reach Mailchimp through the new LISTEN.
        wait_until(lambda: _try(lambda: h.add_contact(user, "after@coachmail.io")), 10)
        started = time.monotonic()
        wait_until(lambda: "after@coachmail.io" in h.members(user), timeout=15)
        assert time.monotonic() - started < 12
        h.add_contact(user, "later@coachmail.io")
        wait_until(lambda: "later@coachmail.io" in h.members(user), timeout=3)
    assert h.queue() == []


def _try(fn: Callable[[], Any]) -> bool:
    try:
        fn()
        return True
    except Exception:
        return False
