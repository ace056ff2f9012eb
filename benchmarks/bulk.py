"""2. Bulk import: contacts inserted in one statement -> time until the audience equals them.

Emulator cost model: 100 ms per call + 1 ms per batch member, at most 10 calls in flight (the
emulator refuses the 11th, like Mailchimp; the worker runs with MCSYNC_MAX_IN_FLIGHT=10).
The clock starts when the INSERT commits and stops at the newest `last_changed_at` in the
audience, once the queue is empty and every contact is mirrored.

Baseline in the same run: batching off (MCSYNC_BATCH_THRESHOLD huge, so one PUT plus one tags
call per member) on a smaller import, extrapolated linearly. Also measured: the same worker with
MCSYNC_CLAIM_SIZE=5000 (a setting, no code change), to show what a wider claim buys.
"""

from __future__ import annotations

import os
import time
from typing import Any

from benchmarks.common import (
    MODELLED_LIMIT,
    PER_CALL_MS,
    PER_MEMBER_MS,
    Context,
    Metric,
    ScenarioResult,
    WorkerProcess,
    add_account,
    cpu_ceiling,
    cpu_meter,
    cpu_metrics,
    emulator,
    insert_contacts,
    log,
    members_by_email,
    mirror_problems,
    wait_for_empty_queue,
)
from benchmarks.timeline import read_timeline

NAME = "bulk"
TITLE = "Bulk import (one INSERT ... SELECT), emulator 100 ms/call + 1 ms/member, 10 in flight"


def _import(
    ctx: Context, n: int, label: str, env: dict[str, str], timeout: float
) -> dict[str, Any]:
    url = ctx.dbs.create(f"bulk_{label}")
    profile = ctx.workdir / f"bulk-{label}.prof" if ctx.profile else None
    try:
        with emulator(PER_CALL_MS, PER_MEMBER_MS) as emu:
            account = add_account(url, emu, f"bulk-{label}")
            with WorkerProcess(
                url, emu, ctx.workdir, env=env, label=f"bulk-{label}", profile=profile
            ) as worker:
                worker.wait_started()
                meter = cpu_meter(ctx, emu, [worker])
                log(f"bulk[{label}]: importing {n:,} contacts")
                started = insert_contacts(url, account.user_id, n)
                committed = meter.snapshot()
                seen_empty = wait_for_empty_queue(
                    url, timeout=timeout, interval=0.25, on_tick=worker.check_alive
                )
                cpu_s = meter.snapshot().since(committed)
                peak_mb = worker.peak_rss_kb / 1024
            timeline = read_timeline(worker.log_path)
            members = members_by_email(emu, account.audience_id)
            problems = mirror_problems(url, account, members)
            finished = max((m["last_changed_at"] for m in members.values()), default=seen_empty)
            calls = sum(1 for r in emu.admin.requests() if r["path"].startswith("/3.0/"))
    finally:
        ctx.dbs.drop(url)
    seconds = finished - started
    return {
        "n": n,
        "seconds": seconds,
        "rate": n / seconds,
        "problems": problems,
        "calls": calls,
        "peak_rss_mb": peak_mb,
        "passes": timeline.passes if timeline else 0,
        "timeline": timeline.describe() if timeline else "no passes logged",
        "profile": str(profile) if profile else None,
        "cpu_s": cpu_s,
    }


def run(ctx: Context) -> ScenarioResult:
    n = 1_000 if ctx.quick else 100_000
    n_base = 100 if ctx.quick else 2_000
    result = ScenarioResult(
        NAME, TITLE, {"contacts": n, "baseline_contacts": n_base, "tuned_contacts": n}
    )
    t0 = time.monotonic()
    main = _import(ctx, n, "default", {}, timeout=1800)
    base = _import(
        ctx, n_base, "nobatch", {"MCSYNC_BATCH_THRESHOLD": str(10**9)}, timeout=1800
    )
    tuned = _import(ctx, n, "claim5000", {"MCSYNC_CLAIM_SIZE": "5000"}, timeout=1800)
    log(f"bulk: done in {time.monotonic() - t0:.0f} s")

    base_100k = base["seconds"] * (100_000 / n_base)
    limit_s = n / MODELLED_LIMIT
    result.metrics += [
        Metric(
            f"time to mirror {n:,} contacts",
            round(main["seconds"], 2),
            "s",
            baseline=round(base["seconds"] * n / n_base, 1),
            baseline_label=f"batching off, {n_base:,} contacts, extrapolated",
            note=f"modelled limit {limit_s:.1f} s",
        ),
        Metric(
            "throughput",
            round(main["rate"]),
            "members/s",
            baseline=round(base["rate"], 1),
            baseline_label=f"batching off, {n_base:,} contacts",
            note=f"modelled limit {MODELLED_LIMIT:,.0f}/s",
        ),
        Metric(
            "fraction of the modelled limit",
            round(main["rate"] / MODELLED_LIMIT, 3),
            "x",
            baseline=round(base["rate"] / MODELLED_LIMIT, 4),
            baseline_label="batching off",
            target=(">=", 0.9),
        ),
        Metric(
            "same, MCSYNC_CLAIM_SIZE=5000 (setting only)",
            round(tuned["rate"] / MODELLED_LIMIT, 3),
            "x",
            note=f"{tuned['seconds']:.1f} s, {tuned['rate']:,.0f} members/s",
        ),
        Metric("worker peak RSS during import", round(main["peak_rss_mb"], 1), "MB"),
    ]
    result.metrics += cpu_metrics(main["cpu_s"], n, note="default worker")
    cores = os.cpu_count() or 1
    ceiling, arithmetic = cpu_ceiling(main["cpu_s"], n, cores)
    result.metrics.append(
        Metric(
            "CPU ceiling on this machine, fraction of the modelled limit",
            round(ceiling / MODELLED_LIMIT, 3),
            "x",
            note=f"{ceiling:,.0f} contacts/s at the measured CPU per contact",
        )
    )
    result.notes.append(
        f"what the CPU allows: {arithmetic}; the modelled limit {MODELLED_LIMIT:,.0f}/s needs "
        f"the sum under {cores / MODELLED_LIMIT * 1000:.3f} ms/contact on {cores} cores "
        f"(and the worker and the emulator each under {1000 / MODELLED_LIMIT:.3f})."
    )
    result.notes.append(
        f"default worker: {main['calls']} API calls in {main['passes']} account passes "
        f"(claim size 500); batching off: {base['calls']} calls for {n_base:,} contacts, "
        f"{base['seconds']:.1f} s, i.e. {base_100k / 60:.0f} min for 100,000; "
        f"claim size 5000: {tuned['calls']} calls in {tuned['passes']} passes."
    )
    result.notes.append(f"where the time goes, default worker: {main['timeline']}.")
    result.notes.append(f"... with MCSYNC_CLAIM_SIZE=5000: {tuned['timeline']}.")
    for label, r in (("default", main), ("batching off", base), ("claim 5000", tuned)):
        if r["problems"]:
            result.notes.append(f"MIRROR MISMATCH ({label}): {r['problems']} contacts differ")
    if ctx.profile:
        result.notes.append(f"cProfile of the default worker: {main['profile']}")
    return result
