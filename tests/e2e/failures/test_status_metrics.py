"""The operator's view: `mcsync status [--json]` and the worker's Prometheus endpoint."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mcsync.cli import build_parser
from tests.e2e.failures.conftest import NOTICE, settle
from tests.support.harness import SyncHarness, wait_until


def test_status_json_and_table_show_state_notice_backlog_rejections_errors(
    fast: SyncHarness, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ok, down = fast.add_user(), fast.add_user()
    fast.add_contact(ok, "fine@coachmail.io")
    fast.add_contact(ok, "test@example.com")  # rejected
    fast.admin.add_fault(status=503, access_token=down.token)
    fast.add_contact(down, "a@coachmail.io")
    fast.add_contact(down, "b@coachmail.io")
    settle(fast)
    capsys.readouterr()  # the worker's own log lines

    monkeypatch.setenv("DATABASE_URL", fast.db_url)
    assert main(["status", "--json"]) == 0
    rows = {r["user_id"]: r for r in json.loads(capsys.readouterr().out)}
    good, bad = rows[str(ok.user_id)], rows[str(down.user_id)]
    assert good["sync_status"] == "active" and good["notice"] is None
    assert good["pending"] == 0 and good["oldest_pending_seconds"] is None
    assert good["rejected"] == 1 and good["last_sync_at"] is not None
    assert bad["sync_status"] == "paused" and bad["notice"] == NOTICE
    assert bad["pending"] == 2 and bad["oldest_pending_seconds"] >= 0
    assert "503" in bad["last_error"] and bad["last_sync_at"] is None

    assert main(["status"]) == 0
    table = capsys.readouterr().out
    assert "paused" in table and "active" in table and NOTICE in table
    assert "PENDING" in table and "REJECTED" in table and "LAST_ERROR" in table


def main(argv: list[str]) -> int:
    """The CLI without its logging setup (which would capture this test's streams for good)."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int) -> str:
    return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text


def _value(text: str, name: str, **labels: str) -> float:
    """The sample `name` with exactly these labels, parsed from the scraped text (label order
    is not part of the format)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    raise AssertionError(f"{name}{labels} not in metrics")


def test_metrics_endpoint_exposes_connection_figures_api_latency_and_outcomes(
    fast: SyncHarness,
) -> None:
    port = _free_port()
    fast.settings.mcsync_metrics_port = port
    user = fast.add_user()
    uid = str(user.user_id)
    with fast.live_worker():
        wait_until(lambda: _try_scrape(port), timeout=5)
        fast.add_contact(user, "m1@coachmail.io")
        fast.add_contact(user, "test@example.com")
        wait_until(lambda: fast.queue() == [], timeout=5)
        fast.admin.add_fault(status=503, count=1)
        fast.add_contact(user, "m2@coachmail.io")
        wait_until(lambda: fast.queue() == [], timeout=5)
        text = _scrape(port)
        openmetrics = httpx.get(
            f"http://127.0.0.1:{port}/metrics",
            headers={"Accept": "application/openmetrics-text"},
            timeout=5,
        )
        assert httpx.get(f"http://127.0.0.1:{port}/nope", timeout=5).status_code == 404

    assert "# TYPE mcsync_api_request_duration_seconds histogram" in text
    assert _value(text, "mcsync_connection_state", user_id=uid, state="active") == 1
    assert _value(text, "mcsync_connection_state", user_id=uid, state="paused") == 0
    assert _value(text, "mcsync_connection_notice", user_id=uid) == 0
    assert _value(text, "mcsync_pending_events", user_id=uid) == 0
    assert _value(text, "mcsync_rejected_contacts", user_id=uid, severity="error") == 1
    assert _value(text, "mcsync_last_sync_timestamp_seconds", user_id=uid) > 0
    assert _value(text, "mcsync_api_requests_total", op="upsert_member", outcome="ok") >= 2
    assert _value(text, "mcsync_api_requests_total", op="upsert_member", outcome="transient") == 1
    assert _value(text, "mcsync_api_request_duration_seconds_count", op="upsert_member") >= 3
    assert _value(text, "mcsync_events_total", outcome="retried") == 1
    assert _value(text, "mcsync_events_total", outcome="rejected") == 1
    assert _value(text, "mcsync_events_total", outcome="completed") >= 2
    assert _value(text, "mcsync_throttled_total", user_id=uid) == 0
    assert _value(text, "mcsync_consecutive_failures", user_id=uid) == 0
    assert _value(text, "mcsync_worker_start_time_seconds") > 0
    # The names the operator's guide documents, all present.
    names = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    assert names >= {
        "mcsync_connection_state", "mcsync_connection_notice", "mcsync_pending_events",
        "mcsync_oldest_pending_seconds", "mcsync_rejected_contacts", "mcsync_consecutive_failures",
        "mcsync_throttled_total", "mcsync_last_sync_timestamp_seconds", "mcsync_last_error_info",
        "mcsync_api_requests_total", "mcsync_api_request_duration_seconds_bucket",
        "mcsync_events_total", "mcsync_worker_start_time_seconds",
    }
    # OpenMetrics for scrapers that ask for it.
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.endswith("# EOF\n")


def _try_scrape(port: int) -> Any:
    try:
        return _scrape(port)
    except httpx.HTTPError:
        time.sleep(0.05)
        return None


def _answers(host: str, port: int) -> bool:
    try:
        return httpx.get(f"http://{host}:{port}/metrics", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_the_metrics_port_listens_on_loopback_unless_metrics_host_says_otherwise(
    fast: SyncHarness, worker_process: Any
) -> None:
    """It bound 0.0.0.0 with no way to choose: every user id on every interface. A server bound
    to 127.0.0.1 does not answer on 127.0.0.2 (another loopback address); one on 0.0.0.0 does."""
    for args, everywhere in (((), False), (("--metrics-host", "0.0.0.0"), True)):
        port = _free_port()
        worker = worker_process(fast).start("--metrics-port", str(port), *args)
        try:
            deadline = time.monotonic() + 20
            while not _answers("127.0.0.1", port):
                assert time.monotonic() < deadline, worker.output()
                time.sleep(0.1)
            assert _answers("127.0.0.2", port) is everywhere
        finally:
            worker.stop()
        lines = [json.loads(line) for line in worker.output().splitlines() if line.strip()]
        (listening,) = [e for e in lines if e["event"] == "metrics_listening"]
        assert listening["host"] == ("0.0.0.0" if everywhere else "127.0.0.1")
