"""The operator's page (`/admin`, `/admin/api/`): who may open it, what it shows, what it does.

Against real Postgres (`mcsync web` connected as the mcsync_web login), the real worker (as the
mcsync_worker login) and the emulator: a paused user, a rejected contact and a drifted audience
are made on purpose (admin_support.make_scenario), then found and acted on through the API."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from mcsync import admin_store
from mcsync.connections import connection_status
from mcsync.web import create_app
from mcsync.web.app import ConfigError
from mcsync.web.operators import OperatorRule, OperatorRuleError
from tests.e2e.web.admin_support import (
    FAKE,
    OPERATOR,
    OPERATOR_CLAIM,
    SYNCED,
    Scenario,
    forged_token,
    make_scenario,
    status_of,
    token,
)
from tests.e2e.web.conftest import web_settings
from tests.support.harness import SyncHarness, wait_until


class Admin:
    def __init__(self, sync: SyncHarness, client: TestClient) -> None:
        self.sync = sync
        self.client = client

    def headers(self, user: uuid.UUID = OPERATOR, **claims: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {token(user, **claims)}"}

    def get(self, path: str, **params: Any) -> Any:
        r = self.client.get(path, params=params, headers=self.headers())
        assert r.status_code == 200, r.text
        return r.json()

    def post(self, path: str, body: Any = None, expect: int = 200) -> Any:
        r = self.client.post(path, json=body, headers=self.headers())
        assert r.status_code == expect, r.text
        return r.json()


@pytest.fixture
def admin(db_url: str, emulator: Any) -> Iterator[Admin]:
    sync = SyncHarness(db_url, emulator, mcsync_backoff_scale=0.01, mcsync_lease_seconds=2.0)
    settings = web_settings(
        sync, mcsync_operator_ids=str(OPERATOR), mcsync_operator_claim=OPERATOR_CLAIM
    )
    with TestClient(create_app(settings, sweep_interval=0.2)) as client:
        yield Admin(sync, client)


@pytest.fixture
def scenario(admin: Admin) -> Scenario:
    return make_scenario(admin.sync)


# --- who may open it -----------------------------------------------------------------------

ADMIN_ROUTES = [
    ("GET", "/admin/api/overview"),
    ("GET", f"/admin/api/users/{uuid.uuid4()}"),
    ("POST", f"/admin/api/users/{uuid.uuid4()}/verify"),
    ("POST", f"/admin/api/users/{uuid.uuid4()}/resume"),
    ("POST", f"/admin/api/users/{uuid.uuid4()}/sync-now"),
    ("POST", f"/admin/api/users/{uuid.uuid4()}/retry-rejected"),
    ("POST", f"/admin/api/users/{uuid.uuid4()}/disconnect"),
]


def test_a_user_token_without_the_operator_rule_gets_403_and_no_token_401(admin: Admin) -> None:
    """Attacks: an ordinary user; one who wrote the role into their own user_metadata; a
    wrong value; a claim `true` where a value is wanted; the right claim under a forged
    signature; no token at all."""
    someone = uuid.uuid4()
    forged = forged_token(someone, app_metadata={"mcsync_role": "operator"})
    cases = {
        "plain user": (admin.headers(someone), 403),
        "self-granted user_metadata": (
            admin.headers(someone, user_metadata={"mcsync_role": "operator"}),
            403,
        ),
        "wrong value": (admin.headers(someone, app_metadata={"mcsync_role": "coach"}), 403),
        "true is not the value": (admin.headers(someone, app_metadata={"mcsync_role": True}), 403),
        "forged signature": ({"Authorization": f"Bearer {forged}"}, 401),
        "no token": ({}, 401),
    }
    for method, path in ADMIN_ROUTES:
        for name, (headers, status) in cases.items():
            r = admin.client.request(method, path, headers=headers, json={"confirm": "x"})
            assert r.status_code == status, (name, method, path, r.text)
    # Operators: by id, or by the claim (as a value or inside a list).
    for headers in (
        admin.headers(),
        admin.headers(someone, app_metadata={"mcsync_role": "operator"}),
        admin.headers(someone, app_metadata={"mcsync_role": ["coach", "operator"]}),
    ):
        assert admin.client.get("/admin/api/overview", headers=headers).status_code == 200


def test_deny_by_default_without_operator_settings(db_url: str, emulator: Any) -> None:
    sync = SyncHarness(db_url, emulator)
    with TestClient(create_app(web_settings(sync), sweep_interval=60)) as client:
        r = client.get(
            "/admin/api/overview",
            headers={"Authorization": f"Bearer {token(OPERATOR)}"},
        )
        assert r.status_code == 403
        page = client.get("/admin")  # the page itself holds no data; its API is what is guarded
        assert (
            page.status_code == 200
            and "frame-ancestors 'none'" in page.headers["content-security-policy"]
        )


def test_a_rule_naming_a_claim_users_write_themselves_is_refused_at_start(db_url: str) -> None:
    for claim in ("user_metadata.role=operator", "raw_user_meta_data.admin", "sub", "a..b"):
        with pytest.raises(OperatorRuleError):
            OperatorRule.from_settings("", claim)
    with pytest.raises(OperatorRuleError, match="not a user id"):
        OperatorRule.from_settings("admin", "")
    sync_settings = {"database_url": db_url, "mcsync_jwt_secret": "legacy-" + "s" * 32}
    from mcsync.config import Settings
    from tests.support.harness import ENCRYPTION_KEY

    with pytest.raises(ConfigError, match="user_metadata"):
        create_app(
            Settings(
                **sync_settings,
                mcsync_encryption_keys=ENCRYPTION_KEY,
                mcsync_operator_claim="user_metadata.role=operator",
            )
        )
    assert not OperatorRule().allows(OPERATOR, {"app_metadata": {"mcsync_role": "operator"}})


# --- the overview --------------------------------------------------------------------------


def test_overview_totals_filter_sort_search_and_pages(admin: Admin, scenario: Scenario) -> None:
    page = admin.get("/admin/api/overview")
    totals = page["totals"]
    assert totals["connections"] == 3
    assert (totals["active"], totals["paused"], totals["error"]) == (2, 1, 0)
    # paused: the late contact; busy: 3; quiet: 1
    assert totals["pending"] == 5
    assert totals["rejected"] == 1
    assert totals["oldest_pending_seconds"] > 0
    assert totals["sync_now_running"] == 0
    by_user = {r["user_id"]: r for r in page["rows"]}
    paused = by_user[str(scenario.paused.user_id)]
    assert paused["sync_status"] == "paused" and paused["rejected"] == 1
    assert paused["status_reason"] == "failures"  # the reason, as `mcsync status` shows it
    assert "500" in paused["last_error"]
    assert paused["state_since"] is not None
    # Sorted by backlog (the default), largest first.
    assert [r["backlog"] for r in page["rows"]] == [3, 1, 1]
    assert page["rows"][0]["user_id"] == str(scenario.busy.user_id)

    only_paused = admin.get("/admin/api/overview", state="paused")
    assert [r["user_id"] for r in only_paused["rows"]] == [str(scenario.paused.user_id)]
    assert only_paused["matched"] == 1 and only_paused["totals"]["connections"] == 3

    prefix = str(scenario.quiet.user_id)[:8]
    found = admin.get("/admin/api/overview", search=prefix)
    assert [r["user_id"] for r in found["rows"]] == [str(scenario.quiet.user_id)]
    by_audience = admin.get("/admin/api/overview", search=scenario.busy.audience_id)
    assert [r["user_id"] for r in by_audience["rows"]] == [str(scenario.busy.user_id)]
    assert admin.get("/admin/api/overview", search="%")["matched"] == 0  # literal, no wildcard

    errors_first = admin.get("/admin/api/overview", sort="last_error")
    assert errors_first["rows"][0]["user_id"] == str(scenario.paused.user_id)

    pages = [admin.get("/admin/api/overview", page=n, page_size=2) for n in (1, 2)]
    assert [p["pages"] for p in pages] == [2, 2]
    seen = [r["user_id"] for p in pages for r in p["rows"]]
    assert len(seen) == 3 and len(set(seen)) == 3

    bad = admin.client.get(
        "/admin/api/overview", params={"sort": "1; DROP TABLE x"}, headers=admin.headers()
    )
    assert bad.status_code == 422


# --- one user, and the actions -------------------------------------------------------------


def test_one_user_shows_health_rejections_pending_and_the_audit(
    admin: Admin, scenario: Scenario
) -> None:
    uid = scenario.paused.user_id
    detail = admin.get(f"/admin/api/users/{uid}")
    assert detail["sync_status"] == "paused" and detail["status_reason"] == "failures"
    paused_event = next(e for e in detail["health"] if e["kind"] == "paused")
    assert paused_event["by"] == "worker" and "500" in paused_event["detail"]
    (rejected,) = detail["rejected"]
    assert rejected["contact_id"] == str(scenario.fake_contact)
    assert "fake" in rejected["reason"] and rejected["email"] == "t***@example.com"
    (pending,) = detail["pending"]  # the contact added during the outage, tried five times
    assert (pending["kind"], pending["contacts"], pending["retrying"]) == ("upsert", 1, 1)
    assert pending["oldest_seconds"] >= 0

    audit = admin.post(f"/admin/api/users/{uid}/verify")
    assert audit["in_sync"] is False
    fields = {d["email"]: d["detail"] for d in audit["differences"] if d["kind"] == "fields"}
    assert fields["r***@coachmail.io"] == "FNAME: 'Rosie' -> 'Rosa'"  # changed by hand
    assert admin.sync.queue() != []  # the audit changed nothing: the late contact still waits


def test_actions_resume_sync_now_retry_disconnect_each_logged_with_the_operator(
    admin: Admin, scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    from mcsync.logging import configure_logging

    configure_logging("INFO")
    uid = scenario.paused.user_id
    resumed = admin.post(f"/admin/api/users/{uid}/resume")
    assert resumed["sync_status"] == "active" and status_of(admin.sync, scenario.paused) == "active"
    admin.sync.drain()
    assert "late.lou@coachmail.io" in admin.sync.members(scenario.paused)

    # Sync Now twice in a row: no hourly limit for operators. It repairs the drift.
    admin.post(f"/admin/api/users/{uid}/sync-now", expect=202)
    wait_until(
        lambda: admin.sync.execute(
            "SELECT finished_at FROM mcsync.mcsync_reconciliations WHERE user_id = %s", (uid,)
        )[0]["finished_at"],
        timeout=15,
    )
    admin.post(f"/admin/api/users/{uid}/sync-now", expect=202)
    wait_until(
        lambda: admin.sync.execute(
            "SELECT finished_at FROM mcsync.mcsync_reconciliations WHERE user_id = %s", (uid,)
        )[0]["finished_at"],
        timeout=15,
    )
    admin.sync.drain()
    assert admin.sync.members(scenario.paused)[SYNCED]["merge_fields"]["FNAME"] == "Rosa"
    # The operator's runs did not start the user's own hourly limit: their button still works.
    mine = admin.client.get("/api/status", headers={"Authorization": f"Bearer {token(uid)}"})
    assert mine.status_code == 200 and mine.json()["sync_now"]["available_in"] == 0
    assert admin.post(f"/admin/api/users/{uid}/verify")["in_sync"] is True

    # Retry the refused contact: queued again (and refused again, with the reason kept).
    assert admin.post(f"/admin/api/users/{uid}/retry-rejected") == {"queued": 1}
    (row,) = [r for r in admin.sync.queue() if r["user_id"] == uid]
    assert row["contact_id"] == scenario.fake_contact and row["op"] == "resync"
    admin.sync.drain()
    (rejection,) = admin.sync.rejections()
    assert "fake" in rejection["reason"]

    # Disconnect needs the confirmation; Mailchimp is left as it is.
    members = admin.sync.members(scenario.paused)
    refused = admin.client.post(
        f"/admin/api/users/{uid}/disconnect", json={"confirm": "yes"}, headers=admin.headers()
    )
    assert refused.status_code == 422 and status_of(admin.sync, scenario.paused) == "active"
    assert admin.post(f"/admin/api/users/{uid}/disconnect", {"confirm": str(uid)}) == {
        "disconnected": True
    }
    assert (
        admin.sync.execute("SELECT 1 FROM mcsync.mailchimp_connections WHERE user_id = %s", (uid,))
        == []
    )
    assert admin.sync.members(scenario.paused) == members

    # Every action: a log line and a health event, each naming the operator.
    logged = [json.loads(line) for line in capsys.readouterr().err.splitlines() if "{" in line]
    actions = [e for e in logged if e.get("event") == "admin_action"]
    assert [a["action"] for a in actions] == [
        "resume",
        "sync_now",
        "sync_now",
        "verify",
        "retry_rejected",
        "disconnect",
    ]
    assert all(a["operator_id"] == str(OPERATOR) and a["user_id"] == str(uid) for a in actions)
    events = admin.sync.execute(
        "SELECT kind, actor FROM mcsync.mailchimp_health_events WHERE user_id = %s ORDER BY id",
        (uid,),
    )
    by_operator = [e["kind"] for e in events if e["actor"] == str(OPERATOR)]
    assert {"resumed", "sync_now", "verified", "retry_rejected", "disconnected"} <= set(by_operator)


def test_nothing_secret_is_shown(admin: Admin, scenario: Scenario) -> None:
    uid = scenario.paused.user_id
    admin.sync.execute(
        "UPDATE mcsync.mailchimp_connections SET last_error = %s WHERE user_id = %s",
        (f"401 for Bearer {scenario.paused.token} at {SYNCED}", uid),
    )
    (stored,) = admin.sync.execute(
        "SELECT access_token_encrypted FROM mcsync.mailchimp_connections WHERE user_id = %s",
        (uid,),
    )
    bodies = [
        json.dumps(admin.get("/admin/api/overview")),
        json.dumps(admin.get(f"/admin/api/users/{uid}")),
        json.dumps(admin.post(f"/admin/api/users/{uid}/verify")),
    ]
    for body in bodies:
        assert scenario.paused.token not in body
        assert stored["access_token_encrypted"] not in body
        assert SYNCED not in body and FAKE not in body
        assert "dc" not in json.loads(body) and "access_token_encrypted" not in body


def test_the_health_history_is_bounded_and_repeats_are_counted(admin: Admin) -> None:
    import psycopg

    uid = uuid.uuid4()
    with psycopg.connect(admin.sync.db_url, autocommit=True) as conn:
        for i in range(3):
            admin_store.record_health_event(conn, uid, "probe_failed", detail=f"503 #{i}")
        for i in range(70):
            admin_store.record_health_event(conn, uid, "paused" if i % 2 else "resumed")
    rows = admin.sync.execute(
        "SELECT kind, repeats, detail FROM mcsync.mailchimp_health_events WHERE user_id = %s "
        "ORDER BY id",
        (uid,),
    )
    assert len(rows) == 50
    assert rows[-1]["kind"] == "paused"
    first = admin.sync.execute(
        "SELECT count(*) AS n FROM mcsync.mailchimp_health_events WHERE kind = 'probe_failed' "
        "AND user_id = %s",
        (uid,),
    )
    assert first == [{"n": 0}]  # trimmed away as newer events came


def test_repeated_probe_failures_are_one_event_with_a_count(admin: Admin) -> None:
    import psycopg

    uid = uuid.uuid4()
    with psycopg.connect(admin.sync.db_url, autocommit=True) as conn:
        for i in range(3):
            admin_store.record_health_event(conn, uid, "probe_failed", detail=f"503 #{i}")
    (row,) = admin.sync.execute(
        "SELECT repeats, detail FROM mcsync.mailchimp_health_events WHERE user_id = %s", (uid,)
    )
    assert row == {"repeats": 3, "detail": "503 #2"}


def test_the_worker_still_pauses_and_resumes_when_the_history_cannot_be_written(
    admin: Admin,
) -> None:
    """The history is for reading: a worker role that lost its grant on it (an install whose
    grants.sql was not re-applied after migrating) still pauses and resumes connections."""
    sync = admin.sync
    sync.execute("REVOKE ALL ON mcsync.mailchimp_health_events FROM mcsync_worker")
    user = sync.add_user()
    sync.admin.add_fault(status=500, access_token=user.token)
    sync.add_contact(user, "no.history@coachmail.io")
    wait_until(lambda: (sync.drain(), status_of(sync, user) == "paused")[1], timeout=20)
    sync.admin.clear_faults()
    wait_until(lambda: (sync.drain(), status_of(sync, user) == "active")[1], timeout=20)
    sync.drain()
    assert "no.history@coachmail.io" in sync.members(user)
    assert sync.execute("SELECT * FROM mcsync.mailchimp_health_events") == []


def test_a_page_of_the_overview_is_one_statement(
    admin: Admin, scenario: Scenario, tmp_path: Any
) -> None:
    """Counted on the wire: libpq's own protocol trace of the connection shows one query."""
    import psycopg

    trace = tmp_path / "libpq.trace"
    with psycopg.connect(admin.sync.db_url, autocommit=True) as conn, trace.open("w") as out:
        conn.pgconn.trace(out.fileno())
        conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        page = admin_store.overview(conn, admin_store.OverviewQuery(state="paused", sort="oldest"))
        conn.pgconn.untrace()
    assert [r["user_id"] for r in page["rows"]] == [str(scenario.paused.user_id)]
    sent = [line.split("\t") for line in trace.read_text().splitlines()]
    statements = [m for m in sent if m[0] == "F" and m[2] in ("Query", "Parse")]
    assert len(statements) == 1, statements


def test_the_worker_writes_pauses_probes_resumes_and_errors_to_the_history(admin: Admin) -> None:
    sync = admin.sync
    user = sync.add_user()
    sync.admin.add_fault(status=503, access_token=user.token)
    sync.add_contact(user, "outage@coachmail.io")
    wait_until(lambda: (sync.drain(), status_of(sync, user) == "paused")[1], timeout=20)
    # Still down: the worker's probes fail (one row, counted).
    wait_until(
        lambda: (
            sync.drain(),
            any(
                e["kind"] == "probe_failed"
                for e in admin.get(f"/admin/api/users/{user.user_id}")["health"]
            ),
        )[1],
        timeout=20,
    )
    sync.admin.clear_faults()
    wait_until(lambda: (sync.drain(), status_of(sync, user) == "active")[1], timeout=20)
    sync.admin.revoke(user.token)
    sync.add_contact(user, "after.revoke@coachmail.io")
    sync.drain()
    assert status_of(sync, user) == "error"
    detail = admin.get(f"/admin/api/users/{user.user_id}")
    assert [e["kind"] for e in detail["health"]] == ["error", "resumed", "probe_failed", "paused"]
    assert {e["by"] for e in detail["health"]} == {"worker"}
    error, resumed, probe_failed, paused = detail["health"]
    assert (
        "401" in error["detail"] and "503" in paused["detail"] and "503" in probe_failed["detail"]
    )
    assert resumed["detail"] == "probe answered"
    overview = admin.get("/admin/api/overview", state="error")
    (row,) = overview["rows"]
    assert row["user_id"] == str(user.user_id)
    since, last = (datetime.fromisoformat(t) for t in (row["state_since"], error["last_at"]))
    assert since == last  # in error since the worker found the token revoked


def test_the_backlog_is_one_number_for_status_the_overview_and_the_widget(admin: Admin) -> None:
    """`mcsync status` (and the metrics), `/admin` (the overview and one user's pending work)
    and the widget's `/api/status` count the backlog by one definition
    (`BACKLOG_BY_USER`): queued changes plus the contacts still inside an import, the oldest
    of either. Here an hour-old import of 1,000 contacts waits behind two fresh edits."""
    sync = admin.sync
    user = sync.add_user()
    c = sync.app.column
    sync.execute(
        f"INSERT INTO {sync.app.table} ({c('user_id')}, {c('email')})"
        " SELECT %s, 'imp' || g || '@coachmail.io' FROM generate_series(1, 1000) g",
        (user.user_id,),
    )
    sync.execute("UPDATE mcsync.mailchimp_sync_bulk SET enqueued_at = now() - interval '1 hour'")
    sync.add_contact(user, "one@coachmail.io")
    sync.add_contact(user, "two@coachmail.io")
    (bulk,) = sync.execute("SELECT cardinality(contact_ids) AS n FROM mcsync.mailchimp_sync_bulk")
    assert bulk["n"] == 1000 and len(sync.queue()) == 2

    with psycopg.connect(sync.db_url) as conn:
        (status,) = [r for r in connection_status(conn) if r["user_id"] == str(user.user_id)]
    (row,) = admin.get("/admin/api/overview", search=str(user.user_id))["rows"]
    detail = admin.get(f"/admin/api/users/{user.user_id}")
    widget = admin.client.get(
        "/api/status", headers={"Authorization": f"Bearer {token(user.user_id)}"}
    ).json()

    assert status["pending"] == row["backlog"] == widget["pending"] == 1002
    assert sum(p["contacts"] for p in detail["pending"]) == 1002
    assert 3600 <= status["oldest_pending_seconds"] < 3600 + 60
    assert abs(status["oldest_pending_seconds"] - row["oldest_pending_seconds"]) < 60
