"""Leases: a pass longer than the lease keeps its account; another worker never doubles it."""

from __future__ import annotations

from tests.support.harness import SyncHarness, wait_until


def test_a_pass_longer_than_the_lease_is_not_taken_over_by_another_worker(
    sync: SyncHarness,
) -> None:
    sync.settings.mcsync_lease_seconds = 0.6
    sync.admin.set_latency(per_call_ms=1500, per_member_ms=0)
    user = sync.add_user()
    sync.add_contact(user, "slow@coachmail.io", first_name="Slow")
    with sync.live_worker(worker_id="w1"), sync.live_worker(worker_id="w2"):
        wait_until(lambda: sync.queue() == [], timeout=20)
    puts = [r for r in sync.api_calls("PUT")]
    assert len(puts) == 1  # a second worker after 0.6 s would have sent it again
    assert sync.members(user)["slow@coachmail.io"]["merge_fields"]["FNAME"] == "Slow"
