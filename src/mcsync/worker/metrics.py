"""Prometheus metrics for the worker: `mcsync worker --metrics-port N` serves GET /metrics.

Built on `prometheus_client`. Per connection, the figures `mcsync status` shows, read from
Postgres at scrape time by a custom collector (so every worker reports the same truth); per
worker process, counters and a latency histogram of Mailchimp calls and what happened to the
queue rows it processed. Each `Metrics` has its own registry, so several workers in one process
(tests, benchmarks) never share counts."""

from __future__ import annotations

import asyncio
import socketserver
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from psycopg_pool import AsyncConnectionPool

from mcsync.logging import get_logger
from mcsync.worker.store import connection_rows

log = get_logger("mcsync.worker")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STATES = ("active", "paused", "error")
SCRAPE_DB_TIMEOUT = 5.0  # seconds a scrape waits for the connection figures


class Metrics:
    """Counters and latency histograms of one worker process, in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.api_requests = Counter(
            "mcsync_api_requests",
            "Mailchimp API calls by operation and outcome",
            ["op", "outcome"],
            registry=self.registry,
        )
        self.api_duration = Histogram(
            "mcsync_api_request_duration_seconds",
            "Mailchimp API call latency",
            ["op"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.events = Counter(
            "mcsync_events",
            "queue rows this worker processed, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        started = Gauge(
            "mcsync_worker_start_time_seconds", "when this worker started", registry=self.registry
        )
        started.set_to_current_time()

    def observe_call(self, op: str, outcome: str, seconds: float) -> None:
        """Count one Mailchimp call and its latency."""
        self.api_requests.labels(op=op, outcome=outcome).inc()
        self.api_duration.labels(op=op).observe(seconds)

    def count_events(self, outcome: str, n: int) -> None:
        """Count `n` queue rows that ended a pass with `outcome`."""
        if n:
            self.events.labels(outcome=outcome).inc(n)


def _gauge(name: str, documentation: str, *labels: str) -> GaugeMetricFamily:
    """A per-connection gauge: labelled by the connection's user id (then `labels`)."""
    return GaugeMetricFamily(name, documentation, labels=["user_id", *labels])


def connection_families(rows: Iterable[Mapping[str, Any]]) -> list[Metric]:
    """The per-connection metric families for `mcsync status` rows (`store.connection_rows`)."""
    state = _gauge("mcsync_connection_state", "1 for the connection's current state", "state")
    notice = _gauge("mcsync_connection_notice", "1 while the user is shown the sync notice")
    pending = _gauge("mcsync_pending_events", "queue rows waiting for the connection")
    oldest = _gauge("mcsync_oldest_pending_seconds", "age of the connection's oldest queue row")
    rejected = _gauge(
        "mcsync_rejected_contacts", "contacts Mailchimp refused (or warned about)", "severity"
    )
    failures = _gauge("mcsync_consecutive_failures", "failed passes since the last success")
    last_sync = _gauge("mcsync_last_sync_timestamp_seconds", "unix time of the last clean sync")
    throttled = CounterMetricFamily(
        "mcsync_throttled", "times Mailchimp throttled the connection", labels=["user_id"]
    )
    last_error = InfoMetricFamily(
        "mcsync_last_error", "the connection's last error (1 when set)", labels=["user_id"]
    )
    for r in rows:
        uid = str(r["user_id"])
        for s in STATES:
            state.add_metric([uid, s], 1 if r["sync_status"] == s else 0)
        notice.add_metric([uid], 1 if r["notice"] else 0)
        pending.add_metric([uid], r["pending"] or 0)
        oldest.add_metric([uid], float(r["oldest_pending_seconds"] or 0))
        rejected.add_metric([uid, "error"], r["rejected"] or 0)
        rejected.add_metric([uid, "warning"], r["warnings"] or 0)
        failures.add_metric([uid], r["consecutive_failures"] or 0)
        throttled.add_metric([uid], r["throttled_count"] or 0)
        if r["last_sync_at"] is not None:
            last_sync.add_metric([uid], round(r["last_sync_at"].timestamp(), 3))
        if r["last_error"]:
            last_error.add_metric([uid], {"error": str(r["last_error"])[:200]})
    return [state, notice, pending, oldest, rejected, failures, throttled, last_sync, last_error]


class ConnectionCollector(Collector):
    """Reads the connection figures at scrape time; a database that is away yields none."""

    def __init__(self, read_rows: Callable[[], list[dict[str, Any]]]) -> None:
        self.read_rows = read_rows

    def describe(self) -> list[Metric]:
        return []  # nothing to read at registration time

    def collect(self) -> Iterator[Metric]:
        try:
            rows = self.read_rows()
        except Exception as exc:  # the database is away: still report the worker's own figures
            log.warning("metrics_db_unavailable", outcome="error", error=repr(exc)[:200])
            rows = []
        yield from connection_families(rows)


def _only_metrics_paths(app: Callable[..., Any]) -> Callable[..., Any]:
    """GET /metrics (or /) goes to prometheus_client's app; anything else is a 404."""

    def dispatch(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("REQUEST_METHOD") != "GET" or environ.get("PATH_INFO") not in (
            "/metrics",
            "/",
        ):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        return app(environ, start_response)

    return dispatch


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # no access log on stderr
        pass


class MetricsServer:
    """GET /metrics on `port` (0: any free port; see `.port` once started).

    prometheus_client's WSGI app, served from a thread (as its `start_http_server` does); the
    connection figures are read through the worker's own pool on the worker's event loop."""

    def __init__(
        self, metrics: Metrics, pool: AsyncConnectionPool, port: int, host: str = "127.0.0.1"
    ) -> None:
        self.metrics = metrics
        self.pool = pool
        self.host = host
        self.port = port
        self._server: _ThreadingServer | None = None
        self._thread: threading.Thread | None = None
        self._collector: ConnectionCollector | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()

        def read_rows() -> list[dict[str, Any]]:
            future = asyncio.run_coroutine_threadsafe(connection_rows(self.pool), loop)
            try:
                return future.result(SCRAPE_DB_TIMEOUT)
            finally:
                future.cancel()

        self._collector = ConnectionCollector(read_rows)
        self.metrics.registry.register(self._collector)
        app = _only_metrics_paths(make_wsgi_app(self.metrics.registry))
        self._server = make_server(
            self.host, self.port, app, server_class=_ThreadingServer, handler_class=_QuietHandler
        )
        self.port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="mcsync-metrics", daemon=True
        )
        self._thread.start()
        log.info("metrics_listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        if self._server is not None:
            await asyncio.to_thread(self._server.shutdown)
            self._server.server_close()
            self._server = None
        if self._collector is not None:
            self.metrics.registry.unregister(self._collector)
            self._collector = None
