"""4. Backlog: a large number of pending events for one account -> the worker's peak RSS and
drain rate.

The backlog is made the way an app makes it: one INSERT ... SELECT into `contacts` with mcsync's
triggers installed and the user connected (the triggers queue every row), before the worker
starts. Then `mcsync worker` starts as a subprocess against an emulator with latency 0 (so the
drain rate is the worker's own speed) and its /proc/<pid>/status VmHWM is sampled until the
queue is empty, or until a time cap (then the rate is over what it drained).
Baseline in the same run: the same worker idle (nothing queued), its VmHWM after 3 s.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from benchmarks.common import (
    Context,
    Metric,
    ScenarioResult,
    WorkerProcess,
    add_account,
    cpu_meter,
    cpu_metrics,
    emulator,
    insert_contacts,
    log,
    queue_count,
)

NAME = "backlog"
TITLE = "Backlog: worker memory and drain rate, one account, emulator latency 0"


def _idle_rss(ctx: Context) -> float:
    url = ctx.dbs.create("backlog_idle")
    try:
        with emulator() as emu:
            add_account(url, emu, "idle")
            with WorkerProcess(url, emu, ctx.workdir, label="backlog-idle") as worker:
                worker.wait_started()
                time.sleep(3)
                worker.stop()
                return worker.peak_rss_kb / 1024
    finally:
        ctx.dbs.drop(url)


def _drain(ctx: Context, n: int, cap_s: float) -> dict[str, Any]:
    url = ctx.dbs.create("backlog")
    try:
        with emulator() as emu:
            account = add_account(url, emu, f"backlog-{n}")
            log(f"backlog: queueing {n:,} events through the triggers")
            t0 = time.perf_counter()
            insert_contacts(url, account.user_id, n)
            enqueue_s = time.perf_counter() - t0
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE contacts, mcsync.mailchimp_sync_queue")
                pending = queue_count(conn)
                profile = ctx.workdir / f"backlog-{n}.prof" if ctx.profile else None
                with WorkerProcess(
                    url, emu, ctx.workdir, label=f"backlog-{n}", profile=profile
                ) as worker:
                    meter = cpu_meter(ctx, emu, [worker])
                    cpu_before = meter.snapshot()
                    started = time.monotonic()
                    left = pending
                    last_report = started
                    while time.monotonic() - started < cap_s:
                        time.sleep(0.1 if ctx.quick else 0.5)
                        worker.check_alive()
                        left = queue_count(conn)
                        if left == 0:
                            break
                        if time.monotonic() - last_report > 30:
                            last_report = time.monotonic()
                            rate = (pending - left) / (last_report - started)
                            log(f"backlog: {left:,} left, {rate:,.0f}/s, "
                                f"RSS peak {worker.peak_rss_kb / 1024:.0f} MB")
                    elapsed = time.monotonic() - started
                    cpu_s = meter.snapshot().since(cpu_before)
                    worker.stop()
            early = [kb / 1024 for t, kb in worker.samples if t - started < 10]
    finally:
        ctx.dbs.drop(url)
    drained = pending - left
    return {
        "n": n,
        "pending": pending,
        "drained": drained,
        "complete": left == 0,
        "seconds": elapsed,
        "rate": drained / elapsed if elapsed else 0.0,
        "peak_rss_mb": worker.peak_rss_kb / 1024,
        "rss_first_10s_mb": max(early, default=0.0),
        "enqueue_s": enqueue_s,
        "cpu_s": cpu_s,
    }


def run(ctx: Context) -> ScenarioResult:
    sizes = (500, 3_000) if ctx.quick else (100_000, 1_000_000)
    cap = 20.0 if ctx.quick else 480.0
    result = ScenarioResult(NAME, TITLE, {"backlogs": list(sizes), "time_cap_s": cap})
    idle = _idle_rss(ctx)
    runs = [_drain(ctx, n, cap) for n in sizes]
    small, large = runs
    for r in runs:
        drained = (
            "drained"
            if r["complete"]
            else f"stopped at the {cap:.0f} s cap after {r['drained']:,} events"
        )
        result.metrics.append(
            Metric(
                f"peak RSS, {r['n']:,} pending",
                round(r["peak_rss_mb"], 1),
                "MB",
                baseline=round(idle, 1),
                baseline_label="same worker idle",
                target=("<=", 150.0),
                note=f"{drained}; queued by the triggers in {r['enqueue_s']:.1f} s",
            )
        )
    result.metrics.append(
        Metric(
            f"peak RSS growth {sizes[0]:,} -> {sizes[1]:,}",
            round(large["peak_rss_mb"] / small["peak_rss_mb"], 3),
            "x",
            target=("<=", 1.1),
            note="flat = ~1.0",
        )
    )
    for r in runs:
        result.metrics.append(
            Metric(
                f"drain rate, {r['n']:,} pending",
                round(r["rate"]),
                "events/s",
                note=f"{r['drained']:,} events in {r['seconds']:.1f} s",
            )
        )
    for r in runs:
        if r["drained"]:
            result.metrics += cpu_metrics(
                r["cpu_s"], r["drained"], label=f"{r['n']:,} pending", note="worker start included"
            )
    if large["rate"] and small["rate"]:
        result.notes.append(
            f"drain rate at {sizes[1]:,} is {large['rate'] / small['rate']:.2f}x the rate at "
            f"{sizes[0]:,}."
        )
    return result
