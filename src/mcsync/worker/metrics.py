"""Prometheus metrics for the worker: `mcsync worker --metrics-port N` serves GET /metrics.

Per connection, the figures `mcsync status` shows (read from Postgres at scrape time, so every
worker reports the same truth); per worker process, Mailchimp API latency and outcomes and what
happened to the queue rows it processed. Plain text exposition format, served by a tiny asyncio
server: no extra dependency."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from mcsync import queries
from mcsync.logging import get_logger

log = get_logger("mcsync.worker")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
STATES = ("active", "paused", "error")


def _escape(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Mapping[str, object]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _num(value: float) -> str:
    return repr(float(value)) if value != int(value) else str(int(value))


class Metrics:
    """Counters and latency histograms of one worker process (all in memory)."""

    def __init__(self) -> None:
        self.api_calls: dict[tuple[str, str], int] = defaultdict(int)
        self.api_buckets: dict[str, list[int]] = {}
        self.api_sum: dict[str, float] = defaultdict(float)
        self.api_count: dict[str, int] = defaultdict(int)
        self.events: dict[str, int] = defaultdict(int)
        self.started = time.time()

    def observe_call(self, op: str, outcome: str, seconds: float) -> None:
        self.api_calls[(op, outcome)] += 1
        buckets = self.api_buckets.setdefault(op, [0] * len(LATENCY_BUCKETS))
        for i, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                buckets[i] += 1
        self.api_sum[op] += seconds
        self.api_count[op] += 1

    def count_events(self, outcome: str, n: int) -> None:
        if n:
            self.events[outcome] += n

    # --- exposition -----------------------------------------------------------------------

    def render(self, connections: Iterable[Mapping[str, Any]] = ()) -> str:
        lines: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")

        def sample(name: str, labels: Mapping[str, object], value: float) -> None:
            lines.append(f"{name}{_labels(labels)} {_num(value)}")

        rows = list(connections)
        family("mcsync_connection_state", "gauge", "1 for the connection's current state")
        for r in rows:
            for state in STATES:
                sample(
                    "mcsync_connection_state",
                    {"user_id": r["user_id"], "state": state},
                    1 if r["sync_status"] == state else 0,
                )
        family("mcsync_connection_notice", "gauge", "1 while the user is shown the sync notice")
        for r in rows:
            sample("mcsync_connection_notice", {"user_id": r["user_id"]}, 1 if r["notice"] else 0)
        family("mcsync_pending_events", "gauge", "queue rows waiting for the connection")
        for r in rows:
            sample("mcsync_pending_events", {"user_id": r["user_id"]}, r["pending"] or 0)
        family("mcsync_oldest_pending_seconds", "gauge", "age of the connection's oldest queue row")
        for r in rows:
            age = r["oldest_pending_seconds"]
            sample("mcsync_oldest_pending_seconds", {"user_id": r["user_id"]}, float(age or 0))
        family("mcsync_rejected_contacts", "gauge", "contacts Mailchimp refused (or warned about)")
        for r in rows:
            sample(
                "mcsync_rejected_contacts",
                {"user_id": r["user_id"], "severity": "error"},
                r["rejected"] or 0,
            )
            sample(
                "mcsync_rejected_contacts",
                {"user_id": r["user_id"], "severity": "warning"},
                r["warnings"] or 0,
            )
        family("mcsync_consecutive_failures", "gauge", "failed passes since the last success")
        for r in rows:
            sample(
                "mcsync_consecutive_failures",
                {"user_id": r["user_id"]},
                r["consecutive_failures"] or 0,
            )
        family("mcsync_throttled", "counter", "times Mailchimp throttled the connection")
        for r in rows:
            sample("mcsync_throttled_total", {"user_id": r["user_id"]}, r["throttled_count"] or 0)
        family("mcsync_last_sync_timestamp_seconds", "gauge", "unix time of the last clean sync")
        for r in rows:
            if r["last_sync_at"] is not None:
                sample(
                    "mcsync_last_sync_timestamp_seconds",
                    {"user_id": r["user_id"]},
                    round(r["last_sync_at"].timestamp(), 3),
                )
        family("mcsync_last_error_info", "gauge", "the connection's last error (1 when set)")
        for r in rows:
            if r["last_error"]:
                sample(
                    "mcsync_last_error_info",
                    {"user_id": r["user_id"], "error": str(r["last_error"])[:200]},
                    1,
                )

        family("mcsync_api_requests", "counter", "Mailchimp API calls by operation and outcome")
        for (op, outcome), n in sorted(self.api_calls.items()):
            sample("mcsync_api_requests_total", {"op": op, "outcome": outcome}, n)
        family("mcsync_api_request_duration_seconds", "histogram", "Mailchimp API call latency")
        for op in sorted(self.api_buckets):
            for bound, n in zip(LATENCY_BUCKETS, self.api_buckets[op], strict=True):
                sample("mcsync_api_request_duration_seconds_bucket", {"op": op, "le": bound}, n)
            sample(
                "mcsync_api_request_duration_seconds_bucket",
                {"op": op, "le": "+Inf"},
                self.api_count[op],
            )
            sample("mcsync_api_request_duration_seconds_sum", {"op": op}, self.api_sum[op])
            sample("mcsync_api_request_duration_seconds_count", {"op": op}, self.api_count[op])
        family("mcsync_events", "counter", "queue rows this worker processed, by outcome")
        for outcome, n in sorted(self.events.items()):
            sample("mcsync_events_total", {"outcome": outcome}, n)
        family("mcsync_worker_start_time_seconds", "gauge", "when this worker started")
        sample("mcsync_worker_start_time_seconds", {}, round(self.started, 3))
        return "\n".join(lines) + "\n"


async def connection_rows(pool: AsyncConnectionPool) -> list[dict[str, Any]]:
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(queries.STATUS_ROWS)
        rows = await cur.fetchall()
    for row in rows:
        row["user_id"] = str(row["user_id"])
    return rows


class MetricsServer:
    """GET /metrics on `port` (0: any free port; see `.port` once started)."""

    def __init__(
        self, metrics: Metrics, pool: AsyncConnectionPool, port: int, host: str = "0.0.0.0"
    ) -> None:
        self.metrics = metrics
        self.pool = pool
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("metrics_listening", port=self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            method, path, *_ = request.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            if method != "GET" or path.split("?")[0] not in ("/metrics", "/"):
                status, body, ctype = "404 Not Found", b"not found\n", "text/plain"
            else:
                try:
                    rows = await connection_rows(self.pool)
                except Exception as exc:  # the database is away: still report the worker
                    log.warning("metrics_db_unavailable", outcome="error", error=repr(exc)[:200])
                    rows = []
                body = self.metrics.render(rows).encode()
                status, ctype = "200 OK", "text/plain; version=0.0.4; charset=utf-8"
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
