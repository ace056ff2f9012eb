"""The Grafana dashboard in docs/grafana/mcsync.json queries only what the worker exposes.

The exposition is the worker's real one: its `Metrics` registry (after a call, a retry and a
throttle were counted) plus the per-connection families built from a `mcsync status` row,
rendered by prometheus_client as `GET /metrics` serves it. Every series name and every label a
query selects or groups by must be in it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mcsync.worker.metrics import ConnectionCollector, Metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "mcsync.json"
_NAME = re.compile(r"\bmcsync_[a-z_]+\b")
_SELECTOR = re.compile(r"\b(mcsync_[a-z_]+)\{([^}]*)\}")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")


def _exposed() -> dict[str, set[str]]:
    """Every series name the worker serves, with the labels it carries."""
    metrics = Metrics()
    metrics.observe_call("upsert_member", "ok", 0.02)
    metrics.observe_call("upsert_member", "throttled", 0.01)
    metrics.count_events("retried", 1)
    row = {
        "user_id": "00000000-0000-4000-8000-000000000001",
        "sync_status": "paused",
        "notice": "Heads up",
        "pending": 3,
        "oldest_pending_seconds": 12.0,
        "rejected": 1,
        "warnings": 0,
        "consecutive_failures": 5,
        "throttled_count": 2,
        "last_sync_at": datetime.now(UTC),
        "last_error": "500 Internal Server Error",
    }
    metrics.registry.register(ConnectionCollector(lambda: [row]))
    text = generate_latest(metrics.registry).decode()
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    return out


def _expressions(panels: list[dict[str, Any]]) -> Iterator[tuple[str, str]]:
    for panel in panels:
        yield from _expressions(panel.get("panels", []))
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def test_every_metric_the_dashboard_queries_is_one_the_worker_exposes() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exposed = _exposed()
    queries = list(_expressions(dashboard["panels"]))
    assert len(queries) >= 20
    problems = []
    used: set[str] = set()
    for title, expr in queries:
        names = set(_NAME.findall(expr))
        if not names:
            problems.append(f"{title}: queries no mcsync metric: {expr}")
        used |= names
        problems += [f"{title}: {n} is not exposed" for n in sorted(names - set(exposed))]
        labels_here = set().union(*(exposed.get(n, set()) for n in names)) | {"le"}
        for name, matchers in _SELECTOR.findall(expr):
            for label in _MATCHER.findall(matchers):
                if label not in exposed.get(name, set()):
                    problems.append(f"{title}: {name} has no label {label}")
        for grouping in _GROUPING.findall(expr):
            for label in filter(None, (g.strip() for g in grouping.split(","))):
                if label not in labels_here:
                    problems.append(f"{title}: no metric of {expr!r} has the label {label}")
    assert problems == []
    # What the issue asks the dashboard to show is there.
    for wanted in (
        "mcsync_api_requests_total",  # calls by outcome
        "mcsync_api_request_duration_seconds_bucket",  # latency
        "mcsync_pending_events",  # backlog
        "mcsync_connection_state",  # paused connections
        "mcsync_throttled_total",  # throttling
        "mcsync_events_total",  # retries
    ):
        assert wanted in used


def test_the_check_itself_catches_a_metric_the_worker_does_not_expose() -> None:
    exposed = _exposed()
    assert "mcsync_api_requests_total" in exposed
    assert "mcsync_api_request_total" not in exposed  # a typo would be reported
    assert "op" in exposed["mcsync_api_request_duration_seconds_bucket"]
