"""7. The operator's overview (`/admin/api/overview`) at 10,000 connections.

One migrated database holding 10,000 connections (1,000 in quick mode): 9 % paused, 1 % in
error; 200,000 queue rows spread unevenly over them (a tenth of the users hold most), a few
imports waiting in the bulk table, 5,000 rejected contacts, three health events per connection.
The overview's single statement (mcsync.admin_store.overview) is timed as `mcsync web` runs it,
on one connection, warmed once, then 20 times per request: the first page with each sort, a
state filter, a search, and a page deep in the list. Target: the first page well under a
second (issue 19); reported, never asserted. Baseline: `mcsync status`'s query (every
connection at once) on the same data."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import psycopg

from benchmarks.common import Context, Metric, ScenarioResult, log, median, percentile
from mcsync import admin_store
from mcsync.queries import statements

NAME = "admin_overview"
TITLE = "Operator overview: first page at 10,000 connections"
REPEATS = 20

FILL = """
INSERT INTO mcsync.mailchimp_connections
    (user_id, access_token_encrypted, dc, api_endpoint, account_name, audience_id,
     audience_name, sync_status, last_error, last_sync_at)
SELECT pg_catalog.md5('u' || i)::uuid, 'not-a-token', 'us1', 'https://us1.api.mailchimp.com',
       'Coach ' || i, 'aud' || i, 'Audience ' || i,
       CASE WHEN mod(i, 100) = 0 THEN 'error' WHEN mod(i, 11) = 0 THEN 'paused' ELSE 'active' END,
       CASE WHEN mod(i, 11) = 0 OR mod(i, 100) = 0 THEN '500 Internal Server Error' END,
       now() - make_interval(secs => i)
  FROM generate_series(1, %(n)s) AS i;

INSERT INTO mcsync.mailchimp_sync_queue (user_id, contact_id, op, enqueued_at, attempts)
SELECT pg_catalog.md5('u' || (CASE WHEN mod(j, 2) = 0 THEN 1 + mod(j, %(n)s / 10)
                                   ELSE 1 + mod(j, %(n)s) END))::uuid,
       gen_random_uuid(), CASE WHEN mod(j, 7) = 0 THEN 'delete' ELSE 'upsert' END,
       now() - make_interval(secs => mod(j, 3600)), mod(j, 5)
  FROM generate_series(1, %(queue)s) AS j;

INSERT INTO mcsync.mailchimp_sync_bulk (user_id, contact_ids)
SELECT pg_catalog.md5('u' || i)::uuid, ARRAY[gen_random_uuid(), gen_random_uuid()]
  FROM generate_series(1, %(n)s, 100) AS i;

INSERT INTO mcsync.mailchimp_rejected_contacts (user_id, contact_id, email, severity, reason)
SELECT pg_catalog.md5('u' || (1 + mod(k, %(n)s)))::uuid, gen_random_uuid(),
       'x' || k || '@example.com',
       CASE WHEN mod(k, 4) = 0 THEN 'warning' ELSE 'error' END, 'looks fake or invalid'
  FROM generate_series(1, %(rejected)s) AS k;

INSERT INTO mcsync.mailchimp_health_events (user_id, kind, detail)
SELECT pg_catalog.md5('u' || i)::uuid, kind, '500 Internal Server Error'
  FROM generate_series(1, %(n)s) AS i, unnest(ARRAY['paused', 'resumed', 'paused']) AS kind;

ANALYZE;
"""


def _timed(conn: psycopg.Connection[Any], query: admin_store.OverviewQuery) -> list[float]:
    admin_store.overview(conn, query)  # warm
    out = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        page = admin_store.overview(conn, query)
        out.append((time.perf_counter() - started) * 1000)
    assert page["rows"], "the overview answered no rows"
    return out


def run(ctx: Context) -> ScenarioResult:
    n = 1_000 if ctx.quick else 10_000
    sizes = {"connections": n, "queue_rows": n * 20, "rejected": n // 2, "health_events": n * 3}
    result = ScenarioResult(NAME, TITLE, sizes)
    with ctx.dbs.scratch("admin") as url:
        log(f"admin overview: filling {n} connections")
        with psycopg.connect(url, autocommit=True) as conn:
            params = {"n": n, "queue": sizes["queue_rows"], "rejected": sizes["rejected"]}
            for statement in FILL.split(";\n\n"):
                conn.execute(statement, params if "%(" in statement else None)
            cases = {
                "first page, by backlog": admin_store.OverviewQuery(),
                "first page, by oldest pending": admin_store.OverviewQuery(sort="oldest"),
                "first page, by last error": admin_store.OverviewQuery(sort="last_error"),
                "paused only": admin_store.OverviewQuery(state="paused"),
                "search by user id prefix": admin_store.OverviewQuery(
                    search=hashlib.md5(b"u1").hexdigest()[:8]
                ),
                "page 100": admin_store.OverviewQuery(page=100 if not ctx.quick else 10),
            }
            # The baseline: what an operator had before, `mcsync status` (every connection, one
            # subquery per connection per figure), on the same data.
            conn.execute(statements().STATUS_ROWS).fetchall()
            status_ms = []
            for _ in range(5):
                started = time.perf_counter()
                conn.execute(statements().STATUS_ROWS).fetchall()
                status_ms.append((time.perf_counter() - started) * 1000)
            for label, query in cases.items():
                times = _timed(conn, query)
                first = label == "first page, by backlog"
                result.metrics.append(
                    Metric(
                        f"{label}: median",
                        round(median(times), 1),
                        "ms",
                        target=("<=", 1000.0) if first else None,
                        baseline=round(median(status_ms), 1) if first else None,
                        baseline_label="`mcsync status`, every row" if first else "",
                    )
                )
                result.metrics.append(
                    Metric(f"{label}: p95", round(percentile(times, 95), 1), "ms")
                )
                log(f"admin overview {label}: median {median(times):.1f} ms")
    result.notes.append(
        "One statement per page (totals, filtered count and the page's 50 rows together), "
        "as `mcsync web` runs it on its pooled connection."
    )
    return result
