"""A connection the worker cannot use (a token no configured key decrypts, a token stored
unbound, a forged row) is a connection state with a reason: backed off like failures, logged
once per change of state, shown by `mcsync status`; never a loop of failed passes."""

from __future__ import annotations

import json
import time
from typing import Any

import psycopg
import pytest
import structlog
from cryptography.fernet import Fernet

from mcsync.admin_store import shown
from mcsync.cli import build_parser
from mcsync.connections import connect_user
from mcsync.crypto import TokenCipher
from mcsync.logging import REDACTED
from tests.e2e.failures.conftest import NOTICE, connection_of
from tests.support.harness import ENCRYPTION_KEY, SyncHarness, User, wait_until


def _connect_under(h: SyncHarness, user: User, key: str) -> None:
    """The user's connection stored by a process holding only `key` (another key than the
    worker's: connected while MCSYNC_ENCRYPTION_KEYS differed, or a key dropped too early)."""
    with psycopg.connect(h.db_url, autocommit=True) as conn:
        connect_user(
            conn,
            TokenCipher([key]),
            user_id=user.user_id,
            access_token=user.token,
            dc="us1",
            api_endpoint=h.emulator.url,
            audience_id=user.audience_id,
            audience_name="Audience",
        )


def test_an_undecryptable_token_pauses_with_a_reason_backs_off_and_resumes_once_the_key_is_back(
    fast: SyncHarness, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    other_key = Fernet.generate_key().decode()
    user = fast.add_user(connect=False)
    _connect_under(fast, user, other_key)
    for i in range(3):
        fast.add_contact(user, f"k{i}@coachmail.io", first_name=f"K{i}")

    with structlog.testing.capture_logs() as logs, fast.live_worker():
        wait_until(lambda: connection_of(fast, user)["sync_status"] == "paused", 5)
        time.sleep(1.5)  # with the scaled backoff, a dozen probes at most: no loop
    state = connection_of(fast, user)
    assert state["status_reason"] == "token_undecryptable" and state["notice"] == NOTICE
    assert "cannot be decrypted" in state["last_error"]
    assert 1 <= state["consecutive_failures"] <= 12  # each probe waited longer than the last
    events = [e["event"] for e in logs]
    assert "account_pass_failed" not in events
    unusable = [e for e in logs if e["event"] == "connection_unusable"]
    assert len(unusable) == 1  # once per change of state, not once per probe
    assert unusable[0]["reason"] == "token_undecryptable" and unusable[0]["log_level"] == "error"
    assert fast.api_calls() == [] and len(fast.queue()) == 3
    # The health history (the operator's page) keeps the whole sentence: no word of it taken
    # for a secret, and showing it (redacted again) changes nothing.
    [paused] = fast.execute(
        "SELECT detail FROM mcsync.mailchimp_health_events WHERE user_id = %s AND kind = 'paused'",
        (user.user_id,),
    )
    assert paused["detail"].startswith("token_undecryptable (a stored token cannot be decrypted")
    assert REDACTED not in paused["detail"] and shown(paused["detail"]) == paused["detail"]

    # The operator's view says so.
    monkeypatch.setenv("DATABASE_URL", fast.db_url)
    capsys.readouterr()
    args = build_parser().parse_args(["status", "--json"])
    assert int(args.func(args) or 0) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["sync_status"] == "paused" and row["status_reason"] == "token_undecryptable"
    args = build_parser().parse_args(["status"])
    args.func(args)
    assert "paused (token_undecryptable)" in capsys.readouterr().out

    # The key is put back: the next probe resumes it, and everything pending is mirrored.
    back = SyncHarness(
        fast.db_url,
        fast.emulator,
        mcsync_encryption_keys=f"{ENCRYPTION_KEY},{other_key}",
        mcsync_backoff_scale=0.01,
        mcsync_poll_interval=0.1,
    )
    with back.live_worker():
        wait_until(lambda: fast.queue() == [], 10)
    assert {f"k{i}@coachmail.io" for i in range(3)} <= set(fast.members(user))
    state = connection_of(fast, user)
    assert state["sync_status"] == "active" and state["status_reason"] is None
    assert state["last_error"] is None and state["notice"] is None


def test_a_token_of_another_user_is_an_error_with_its_reason_logged_once(
    fast: SyncHarness,
) -> None:
    victim, attacker = fast.add_user(), fast.add_user()
    [row] = fast.execute(
        "SELECT access_token_encrypted FROM mcsync.mailchimp_connections WHERE user_id = %s",
        (attacker.user_id,),
    )
    fast.execute(
        "UPDATE mcsync.mailchimp_connections SET access_token_encrypted = %s WHERE user_id = %s",
        (row["access_token_encrypted"], victim.user_id),
    )
    fast.add_contact(victim, "v@coachmail.io")
    with structlog.testing.capture_logs() as logs:
        fast.drain()
        fast.add_contact(victim, "v2@coachmail.io")
        fast.drain()
    state: dict[str, Any] = connection_of(fast, victim)
    assert state["sync_status"] == "error" and state["status_reason"] == "token_not_this_users"
    assert [e["reason"] for e in logs if e["event"] == "connection_unusable"] == [
        "token_not_this_users"
    ]
    assert fast.api_calls() == []


def test_the_web_side_answers_a_connection_it_cannot_use_calmly_not_with_a_500(
    fast: SyncHarness,
) -> None:
    """The widget's audience list (and the operator's probe) with a token no configured key
    opens: a 409 naming the paused state, as the worker records it; never a 500."""
    from fastapi.testclient import TestClient

    from mcsync.web import create_app
    from tests.e2e.web.conftest import WebHarness, web_settings

    user = fast.add_user(connect=False)
    _connect_under(fast, user, Fernet.generate_key().decode())
    settings = web_settings(fast)
    with TestClient(create_app(settings, sweep_interval=60)) as client:
        web = WebHarness(fast, client, settings)
        r = client.get("/api/audiences", headers=web.headers(user.user_id))
    assert r.status_code == 409
    assert r.json() == {"detail": NOTICE, "reason": "token_undecryptable"}
