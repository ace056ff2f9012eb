"""Retries with backoff, throttling, pause/probe/resume, the outage, a revoked token."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from typing import Any

import pytest

from mcsync.worker.backoff import (
    CAP_SECONDS,
    MAX_ATTEMPTS,
    Backoff,
    backoff_delay,
    throttle_delay,
)
from tests.e2e.failures.conftest import NOTICE, SCALE, connection, settle
from tests.support.harness import SyncHarness, wait_until

# --- the schedule itself -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "nominal"),
    [(1, 1), (2, 2), (3, 4), (4, 8), (5, 16), (6, 32), (9, 256), (10, 300), (40, 300)],
)
def test_backoff_schedule_is_1_2_4_8_16_capped_at_300_with_small_jitter(
    attempt: int, nominal: float
) -> None:
    delays = [backoff_delay(attempt) for _ in range(200)]
    assert all(d <= CAP_SECONDS for d in delays)
    assert all(nominal * 0.9 - 1e-9 <= d <= min(CAP_SECONDS, nominal * 1.1) for d in delays)
    if nominal < CAP_SECONDS:
        assert len({round(d, 6) for d in delays}) > 1  # jittered, so bursts spread out
    scaled = backoff_delay(attempt, scale=0.01)
    assert nominal * 0.009 <= scaled <= min(CAP_SECONDS, nominal * 1.1) * 0.01


def test_throttle_delay_honours_retry_after_capped_else_a_short_pause() -> None:
    assert throttle_delay(7) == 7
    assert throttle_delay(10_000) == CAP_SECONDS
    assert all(1 <= throttle_delay(None) <= 3 for _ in range(50))
    assert throttle_delay(7, scale=0.01) == pytest.approx(0.07)
    assert MAX_ATTEMPTS == 5


def test_the_injected_backoff_scales_every_delay_it_decides() -> None:
    fast = Backoff(scale=0.01)
    assert all(0.009 <= fast.retry(1) <= 0.011 for _ in range(50))
    assert fast.retry(40) == pytest.approx(CAP_SECONDS * 0.01, rel=0.1)
    assert fast.throttled(7) == pytest.approx(0.07)
    assert all(0.01 <= fast.throttled(None) <= 0.03 for _ in range(50))
    assert Backoff().throttled(7) == 7


# --- retries on the event row ------------------------------------------------------------------


def _db_now(h: SyncHarness) -> datetime:
    (row,) = h.execute("SELECT pg_catalog.clock_timestamp() AS t")
    return row["t"]  # type: ignore[no-any-return]


def _retried_drain(h: SyncHarness) -> tuple[dict[str, Any], datetime, datetime]:
    """One drain that retries the event, bracketed by the database's clock: the row, and the
    database's time just before and just after the drain. The worker's delay is then bounded
    by what the row says, however slow the machine: next_retry_at - after <= delay <=
    next_retry_at - before."""
    before = _db_now(h)
    h.drain()
    after = _db_now(h)
    (row,) = h.execute(
        "SELECT attempts, last_error, locked_by, next_retry_at FROM mcsync.mailchimp_sync_queue"
    )
    return row, before, after


def _seconds(delta: timedelta) -> float:
    return delta.total_seconds()


def _wait_until_due(h: SyncHarness, due: datetime) -> None:
    """Until the database's clock passes the row's next_retry_at (no wall-clock guess)."""
    wait_until(lambda: _db_now(h) > due, timeout=30, interval=0.05)


def test_5xx_retries_with_attempts_next_retry_at_and_last_error_on_the_row(
    sync: SyncHarness,
) -> None:
    """Real timing (scale 1): the row waits 1 s, then 2 s (each +-10% jitter), then succeeds.
    Checked by what the rows say against the database's clock around each drain, never by a
    window measured after the fact (a slow machine, or PostgreSQL 15's, used to eat into it)."""
    user = sync.add_user()
    sync.admin.add_fault(status=503, method="PUT", count=2)
    sync.add_contact(user, "retry@coachmail.io", first_name="Re")

    row, before, after = _retried_drain(sync)
    assert row["attempts"] == 1 and row["locked_by"] is None
    assert _seconds(row["next_retry_at"] - before) >= 0.9 - 1e-3
    assert _seconds(row["next_retry_at"] - after) <= 1.1 + 1e-3
    assert "503" in str(row["last_error"])
    calls = len(sync.api_calls())
    sync.drain()  # not due yet: no call (unless the machine took the whole delay to get here)
    if _db_now(sync) < row["next_retry_at"]:
        assert len(sync.api_calls()) == calls

    _wait_until_due(sync, row["next_retry_at"])
    row, before, after = _retried_drain(sync)
    assert row["attempts"] == 2
    assert _seconds(row["next_retry_at"] - before) >= 1.8 - 1e-3
    assert _seconds(row["next_retry_at"] - after) <= 2.2 + 1e-3
    conn = connection(sync)
    assert conn["sync_status"] == "active" and conn["notice"] is None
    assert conn["consecutive_failures"] == 2 and "503" in conn["last_error"]

    _wait_until_due(sync, row["next_retry_at"])
    sync.drain()
    assert sync.queue() == []
    assert sync.members(user)["retry@coachmail.io"]["merge_fields"]["FNAME"] == "Re"
    conn = connection(sync)
    assert conn["sync_status"] == "active" and conn["consecutive_failures"] == 0
    assert conn["last_sync_at"] is not None


def test_timeouts_are_retried_like_5xx(fast: SyncHarness) -> None:
    fast.settings.mcsync_http_timeout = 0.3
    user = fast.add_user()
    fast.admin.add_fault(timeout=1.0, method="PUT", count=1)
    fast.add_contact(user, "slow@coachmail.io")
    settle(fast)
    assert fast.queue() == []
    assert "slow@coachmail.io" in fast.members(user)
    assert connection(fast)["sync_status"] == "active"


# --- throttling --------------------------------------------------------------------------------


def test_429_defers_the_whole_account_without_spending_attempts(sync: SyncHarness) -> None:
    sync.settings.mcsync_max_in_flight = 1
    sync.settings.mcsync_claim_size = 2
    user = sync.add_user()
    for i in range(4):
        sync.add_contact(user, f"t{i}@coachmail.io")
    sync.admin.add_fault(status=429, count=1)
    sync.drain()
    # One call hit the wall; nothing else was fired into it, claimed or not.
    assert len(sync.api_calls()) == 1
    rows = sync.execute(
        """SELECT attempts, last_error, locked_by,
                  extract(epoch FROM next_retry_at - now())::float8 AS due_in
             FROM mcsync.mailchimp_sync_queue"""
    )
    assert len(rows) == 4
    assert all(r["attempts"] == 0 and r["locked_by"] is None for r in rows)
    assert all(r["due_in"] > 0.5 for r in rows)
    conn = connection(sync)
    assert conn["throttled_count"] == 1
    assert conn["consecutive_failures"] == 0 and conn["sync_status"] == "active"


def test_repeated_429s_never_pause(fast: SyncHarness) -> None:
    user = fast.add_user()
    fast.add_contact(user, "busy@coachmail.io")
    fast.admin.add_fault(status=429, count=12, bodiless=True)
    settle(fast)
    assert fast.queue() == []
    assert "busy@coachmail.io" in fast.members(user)
    conn = connection(fast)
    assert conn["sync_status"] == "active" and conn["notice"] is None
    assert conn["throttled_count"] == 12 and conn["consecutive_failures"] == 0


# --- pause, probe, resume ----------------------------------------------------------------------


def test_fifth_failed_attempt_pauses_with_the_notice_and_paused_events_are_left_alone(
    fast: SyncHarness,
) -> None:
    user = fast.add_user()
    fast.add_contact(user, "p1@coachmail.io")
    fast.admin.add_fault(status=500)
    settle(fast)
    conn = connection(fast)
    assert conn["sync_status"] == "paused"
    assert conn["notice"] == NOTICE
    assert "500" in conn["last_error"]
    (row,) = fast.queue()
    assert row["attempts"] == MAX_ATTEMPTS and "500" in row["last_error"]
    writes = [c for c in fast.api_calls() if c["method"] != "GET"]
    assert len(writes) == MAX_ATTEMPTS  # exactly five tries, then stop

    # While paused: new events queue up, are never claimed and never burn attempts; only the
    # probe (a GET of the audience) talks to Mailchimp.
    fast.add_contact(user, "p2@coachmail.io")
    for _ in range(3):
        time.sleep(0.1)
        fast.drain()
    assert [c for c in fast.api_calls() if c["method"] != "GET"] == writes
    rows = {
        r["email"]: r
        for r in fast.execute(
            "SELECT c.email, q.attempts, q.locked_by FROM mcsync.mailchimp_sync_queue q "
            "JOIN contacts c ON c.id = q.contact_id"
        )
    }
    assert rows["p1@coachmail.io"]["attempts"] == MAX_ATTEMPTS
    assert rows["p2@coachmail.io"]["attempts"] == 0
    assert all(r["locked_by"] is None for r in rows.values())
    assert connection(fast)["sync_status"] == "paused"

    # Back up: the first successful probe resumes, clears the notice, and everything is due.
    fast.admin.clear_faults()
    wait_until(lambda: (fast.drain(), connection(fast)["sync_status"] == "active")[1], timeout=5)
    settle(fast)
    conn = connection(fast)
    assert conn["notice"] is None and conn["consecutive_failures"] == 0
    assert fast.queue() == []
    assert {"p1@coachmail.io", "p2@coachmail.io"} <= set(fast.members(user))


def test_outage_longer_than_five_attempts_pauses_then_recovers_by_itself(
    fast: SyncHarness,
) -> None:
    user = fast.add_user()
    other = fast.add_user()  # a healthy account is not held up by the sick one
    fast.admin.add_fault(status=503, access_token=user.token)
    with fast.live_worker():
        for i in range(30):
            fast.add_contact(user, f"o{i}@coachmail.io", first_name=f"O{i}", tags=["t"])
        fast.add_contact(other, "fine@coachmail.io")
        wait_until(lambda: connection_of_user(fast, user)["sync_status"] == "paused", 10)
        assert connection_of_user(fast, user)["notice"] == NOTICE
        assert connection_of_user(fast, user)["status_reason"] == "failures"
        wait_until(lambda: "fine@coachmail.io" in fast.members(other), 5)
        assert connection_of_user(fast, other)["sync_status"] == "active"

        # Paused: the worker only probes, and pending rows keep their attempts.
        writes = len([c for c in fast.api_calls() if c["method"] != "GET"])
        time.sleep(0.6)
        assert len([c for c in fast.api_calls() if c["method"] != "GET"]) == writes
        assert len(fast.queue()) == 30

        fast.admin.clear_faults()
        back = time.monotonic()
        wait_until(lambda: connection_of_user(fast, user)["sync_status"] == "active", 10)
        # The probe interval is capped at 300 s x scale = 3 s.
        assert time.monotonic() - back <= 300 * SCALE + 1.0
        wait_until(lambda: fast.queue() == [], 10)
    members = fast.members(user)
    assert {f"o{i}@coachmail.io" for i in range(30)} <= set(members)
    assert all(members[f"o{i}@coachmail.io"]["merge_fields"]["FNAME"] == f"O{i}" for i in range(30))
    conn = connection_of_user(fast, user)
    assert conn["notice"] is None and conn["sync_status"] == "active"
    # Resumed by itself: no old error shown beside an active connection (`mcsync status`).
    assert conn["last_error"] is None and conn["status_reason"] is None


def connection_of_user(h: SyncHarness, user: object) -> dict[str, object]:
    (row,) = h.execute(
        "SELECT * FROM mcsync.mailchimp_connections WHERE user_id = %s",
        (user.user_id,),  # type: ignore[attr-defined]
    )
    return row


# --- a revoked token ---------------------------------------------------------------------------


def test_revoked_token_sets_error_with_the_notice_and_nothing_is_retried(
    fast: SyncHarness,
) -> None:
    user = fast.add_user()
    fast.add_contact(user, "r1@coachmail.io")
    fast.drain()
    fast.admin.revoke(user.token)
    cid = fast.add_contact(user, "r2@coachmail.io")
    fast.drain()
    conn = connection(fast)
    assert conn["sync_status"] == "error" and conn["notice"] == NOTICE
    assert "401" in conn["last_error"] and conn["status_reason"] == "token_revoked"
    (row,) = fast.queue()
    assert row["contact_id"] == cid and row["attempts"] == 0 and row["locked_by"] is None
    calls = len(fast.api_calls())
    fast.update_contact(cid, first_name="Again")
    time.sleep(0.2)
    fast.drain()
    assert len(fast.api_calls()) == calls  # nothing retried, not even a probe
    assert connection(fast)["sync_status"] == "error"


def test_reconnecting_after_401_resumes_everything_queued(fast: SyncHarness) -> None:
    user, first = fast.mirrored_contact("k1@coachmail.io", first_name="K1")
    # The token stops working (a 401 for this token), then the user reconnects.
    fast.admin.add_fault(status=401, access_token=user.token)
    fast.update_contact(first, first_name="K1b")
    fast.add_contact(user, "k2@coachmail.io", first_name="K2")
    fast.drain()
    assert connection(fast)["sync_status"] == "error"
    assert len(fast.queue()) == 2
    fast.admin.clear_faults()
    fast.connect(user)
    conn = connection(fast)
    assert conn["sync_status"] == "active" and conn["notice"] is None
    fast.drain()
    assert fast.queue() == []
    members = fast.members(user)
    assert members["k1@coachmail.io"]["merge_fields"]["FNAME"] == "K1b"
    assert members["k2@coachmail.io"]["merge_fields"]["FNAME"] == "K2"


def test_failed_calls_are_logged_as_warnings_with_status_and_error_and_contacts_by_id(
    fast: SyncHarness,
) -> None:
    """Failed calls were logged at info with status null and no error text, and the documented
    `contact_id` and `attempt` keys appeared nowhere."""
    import structlog

    user = fast.add_user()
    fast.admin.add_fault(status=503, access_token=user.token, count=1)
    retried = fast.add_contact(user, "five03@coachmail.io")
    with structlog.testing.capture_logs() as logs:
        settle(fast)
        refused = fast.add_contact(user, "test@example.com")  # refused: it looks fake
        settle(fast)
    calls = [e for e in logs if e["event"] == "mailchimp_call"]
    failed = [e for e in calls if e["outcome"] != "ok"]
    assert failed and all(e["log_level"] == "warning" for e in failed)
    assert all(e["log_level"] == "info" for e in calls if e["outcome"] == "ok")
    down = [e for e in failed if e["status"] == 503]
    assert down and all("503" in e["error"] for e in down)
    bad = [e for e in failed if e["status"] == 400]
    assert bad and all(e["error"] for e in bad)
    text = json.dumps(logs, default=str)
    assert "five03@coachmail.io" not in text and "test@example.com" not in text
    (retry,) = [e for e in logs if e["event"] == "contact_retry"]
    assert retry["contact_id"] == str(retried) and retry["attempt"] == 1
    assert retry["log_level"] == "warning" and "503" in retry["error"]
    (rejected,) = [e for e in logs if e["event"] == "contact_rejected"]
    assert rejected["contact_id"] == str(refused) and rejected["log_level"] == "warning"
