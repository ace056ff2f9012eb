"""5. Scale curve: one import of 10,000, 100,000 and 1,000,000 contacts, each on its own.

Per size: a fresh database, the emulator (latency 0, its own process, so the figures are
mcsync's own cost) and `mcsync worker` as a subprocess; one INSERT ... SELECT of n contacts
for a connected user; then until the queue is empty. Measured per size: CPU seconds of the
worker process, of all postgres processes (postmaster and children, exited ones included) and
of the emulator process over the mirroring (from the INSERT's commit until the queue is empty;
the INSERT's own cost is the trigger scenario's business), divided by n; contacts/s (commit to
the newest `last_changed_at` in the audience); the worker's peak RSS (VmHWM); and a mirror check
of every contact. The flatness ratio is a figure at the largest size over the same figure at the
smallest (target <= 1.3: cost per contact that does not grow with the import). Baseline in the
same run: the smallest size.

Sizes: 10k/100k/1M (quick: 500/2,000); `--scale-sizes 10000,100000` or
MCSYNC_BENCH_SCALE_SIZES overrides them. Each import has a time cap (1 h; quick 60 s;
`--scale-cap-s` or MCSYNC_BENCH_SCALE_CAP_S): an import stopped by it is reported over the
contacts drained by then, and not mirror-checked. Also kept per size (JSON `series.tables`):
each mcsync table's buffers read, HOT and other updates and dead rows over the import; and
(JSON `series.storage_bytes`, and as metrics per contact) each table's bytes on disk with its
indexes once the import is mirrored (pg_total_relation_size), mcsync's tables against the app's
`contacts` row, whose indexes are listed apart (mcsync's email index on it counts as mcsync's;
the queue's space, empty once drained and reused, is shown but not counted as knowledge).
`--profile` runs the worker under cProfile.
"""

from __future__ import annotations

import os
import time
from typing import Any

import psycopg

from benchmarks import common
from benchmarks.cpu import ms_per_contact

NAME = "scale"
TITLE = "Scale curve: one import of growing size, CPU per contact per process, emulator latency 0"

FULL_SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (500, 2_000)
RSS_TARGET_MB = 150.0
FLATNESS_TARGET = 1.3


def sizes(ctx: common.Context) -> tuple[int, ...]:
    raw = ctx.options.get("scale_sizes") or os.environ.get("MCSYNC_BENCH_SCALE_SIZES")
    if raw:
        return tuple(sorted(int(x.replace("_", "")) for x in str(raw).split(",") if x.strip()))
    return QUICK_SIZES if ctx.quick else FULL_SIZES


def cap_seconds(ctx: common.Context) -> float:
    raw = ctx.options.get("scale_cap_s") or os.environ.get("MCSYNC_BENCH_SCALE_CAP_S")
    return float(raw) if raw else (60.0 if ctx.quick else 3600.0)


def pending_count(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return common.queue_count(conn)


def _import(ctx: common.Context, n: int, cap_s: float) -> dict[str, Any]:
    with ctx.dbs.scratch(f"scale_{n}") as url:
        with common.emulator() as emu:
            account = common.add_account(url, emu, f"scale-{n}")
            profile = ctx.workdir / f"scale-{n}.prof" if ctx.profile else None
            with common.WorkerProcess(
                url, emu, ctx.workdir, label=f"scale-{n}", profile=profile
            ) as worker:
                worker.wait_started()
                meter = common.cpu_meter(ctx, emu, [worker])
                before = meter.snapshot()
                common.log(f"scale: importing {n:,} contacts")
                started = common.insert_contacts(url, account.user_id, n)
                committed = meter.snapshot()
                drained = n
                try:
                    finished = common.wait_for_empty_queue(
                        url,
                        timeout=cap_s,
                        interval=0.1 if n < 50_000 else 1.0,
                        on_tick=worker.check_alive,
                    )
                except TimeoutError:
                    finished = time.time()
                    drained = n - pending_count(url)
                done = meter.snapshot()
                peak_mb = worker.peak_rss_kb / 1024
            problems: int | None = None
            if drained == n:
                common.log(
                    f"scale: {n:,} drained in {finished - started:.1f} s; checking the mirror"
                )
                members = common.members_by_email(emu, account.audience_id)
                problems = common.mirror_problems(url, account, members)
                finished = max((m["last_changed_at"] for m in members.values()), default=finished)
                del members
            else:
                common.log(f"scale: stopped at the {cap_s:.0f} s cap, {drained:,} of {n:,} drained")
        # After the worker stopped: its backends have exited, so their counters are flushed.
        tables = table_activity(url)
        storage = table_storage(url)
    cpu_s = done.since(committed)
    seconds = finished - started
    return {
        "n": n,
        "drained": drained,
        "seconds": seconds,
        "rate": drained / seconds if seconds > 0 else 0.0,
        "cpu_s": cpu_s,
        "cpu_ms": ms_per_contact(cpu_s, max(drained, 1)),
        "insert_postgres_s": committed.since(before)["postgres"],
        "peak_rss_mb": peak_mb,
        "problems": problems,
        "tables": tables,
        "storage": storage,
        "profile": str(profile) if profile else None,
    }


# Per mcsync table, over the import (a fresh database, so the counters are the import's own):
# buffers read (heap + index), row versions written, updates that were HOT, dead row versions
# left. Where PostgreSQL's CPU goes, without pg_stat_statements (not in embedded pgserver).
TABLE_ACTIVITY = """
SELECT s.relname,
       coalesce(io.heap_blks_hit, 0) + coalesce(io.heap_blks_read, 0),
       coalesce(io.idx_blks_hit, 0) + coalesce(io.idx_blks_read, 0),
       s.n_tup_ins, s.n_tup_upd, s.n_tup_hot_upd, s.n_tup_del, s.n_dead_tup,
       s.autovacuum_count
  FROM pg_stat_user_tables s JOIN pg_statio_user_tables io USING (relid)
 WHERE (s.schemaname = 'mcsync' AND s.relname LIKE 'mailchimp%%') OR s.relname = 'contacts'
 ORDER BY 1
"""


def table_activity(url: str) -> dict[str, dict[str, int]]:
    keys = ("heap_blks", "idx_blks", "ins", "upd", "hot_upd", "del", "dead", "autovacuums")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
        rows = conn.execute(TABLE_ACTIVITY).fetchall()
    return {r[0]: dict(zip(keys, (int(v) for v in r[1:]), strict=True)) for r in rows}


# What each table holds on disk once the import is mirrored, with its indexes and TOAST
# (pg_total_relation_size: what hosted PostgreSQL bills), as the import left it (dead rows
# included: the space is not given back until a VACUUM FULL). mcsync's tables, and the app's
# `contacts` with each of its indexes apart, so mcsync's own index on it
# (`contacts_mcsync_email_idx`) reads separately from the app's row.
TABLE_STORAGE = """
SELECT c.relname, pg_catalog.pg_total_relation_size(c.oid), pg_catalog.pg_relation_size(c.oid),
       pg_catalog.pg_indexes_size(c.oid), NULL::text
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r' AND ((n.nspname = 'mcsync' AND c.relname LIKE 'mailchimp%%')
                            OR (n.nspname = 'public' AND c.relname = 'contacts'))
UNION ALL
SELECT i.relname, pg_catalog.pg_relation_size(i.oid), 0, 0, t.relname
  FROM pg_catalog.pg_index x
  JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
  JOIN pg_catalog.pg_class t ON t.oid = x.indrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
 WHERE n.nspname = 'public' AND t.relname = 'contacts'
 ORDER BY 1
"""


def table_storage(url: str) -> dict[str, dict[str, Any]]:
    """Bytes on disk per table (total, heap, indexes) and per index of `contacts`."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(TABLE_STORAGE).fetchall()
    out: dict[str, dict[str, Any]] = {}
    for name, total, heap, indexes, table in rows:
        if table is None:
            out[name] = {"total": int(total), "heap": int(heap), "indexes": int(indexes)}
        else:
            out[name] = {"total": int(total), "index_of": table}
    return out


# mcsync's knowledge per mirrored contact: what it must keep (the ledger, the links) ...
KNOWLEDGE_TABLES = ("mailchimp_members", "mailchimp_contact_links")
# ... and the work tables an import passes through: empty once drained, their space reused by
# the next changes (not given back to the disk).
WORK_TABLES = ("mailchimp_sync_queue", "mailchimp_sync_bulk")


def storage_metrics(r: dict[str, Any]) -> list[common.Metric]:
    """Bytes per mirrored contact per table: mcsync's against the app's contact row."""
    n = max(r["drained"], 1)
    storage: dict[str, dict[str, Any]] = r["storage"]
    size = f"import of {r['n']:,}"
    email_index = sum(v["total"] for k, v in storage.items() if v.get("index_of") and "mcsync" in k)
    app_row = storage.get("contacts", {"total": 0})["total"] - email_index
    out = [
        common.Metric(
            f"storage per contact, {name}, {size}",
            round(storage[name]["total"] / n),
            "B",
            note=f"heap {storage[name]['heap'] / n:.0f} B, "
            f"indexes {storage[name]['indexes'] / n:.0f} B"
            + ("; empty once drained, its space reused" if name in WORK_TABLES else ""),
        )
        for name in (*KNOWLEDGE_TABLES, *WORK_TABLES)
        if name in storage
    ]
    knowledge = sum(storage[t]["total"] for t in KNOWLEDGE_TABLES if t in storage) + email_index
    out += [
        common.Metric(
            f"storage per contact, mcsync's email index on contacts, {size}",
            round(email_index / n),
            "B",
        ),
        common.Metric(
            f"storage per contact, the app's contacts row with its own indexes, {size}",
            round(app_row / n),
            "B",
        ),
        common.Metric(
            f"storage per contact, mcsync's knowledge, {size}",
            round(knowledge / n),
            "B",
            target=("<=", round(app_row / n)),
            note="ledger + links + the email index on contacts, with their indexes; "
            "target: at or under the app's contact row",
        ),
    ]
    return out


def run(ctx: common.Context) -> common.ScenarioResult:
    ns = sizes(ctx)
    result = common.ScenarioResult(NAME, TITLE, {"imports": list(ns)})
    cap_s = cap_seconds(ctx)
    result.sizes["time_cap_s"] = cap_s
    runs = [_import(ctx, n, cap_s) for n in ns]
    first, last = runs[0], runs[-1]
    for r in runs:
        n = r["n"]
        partial = (
            ""
            if r["drained"] == n
            else f"stopped at the {cap_s:.0f} s cap: figures over the {r['drained']:,} drained"
        )
        if partial:
            result.notes.append(f"import of {n:,}: {partial}.")
        result.metrics += common.cpu_metrics(
            r["cpu_s"], max(r["drained"], 1), label=f"import of {n:,}", note=partial
        )
        result.metrics += [
            common.Metric(
                f"contacts/s, import of {n:,}",
                round(r["rate"]),
                "contacts/s",
                note=f"{r['seconds']:.1f} s from commit to the last member applied"
                if not partial
                else partial,
            ),
            common.Metric(
                f"worker peak RSS, import of {n:,}",
                round(r["peak_rss_mb"], 1),
                "MB",
                target=("<=", RSS_TARGET_MB) if n == last["n"] else None,
            ),
            common.Metric(
                f"contacts not mirrored, import of {n:,}",
                r["problems"],
                "",
                target=("<=", 0),
                note="" if r["problems"] is not None else "not checked: not drained",
            ),
        ]
        result.metrics += storage_metrics(r)
    for proc in common.PROCESSES:
        base = first["cpu_ms"][proc]
        result.metrics.append(
            common.Metric(
                f"{proc} CPU per contact, {last['n']:,} / {first['n']:,}",
                round(last["cpu_ms"][proc] / base, 3) if base else None,
                "x",
                baseline=round(base, 4),
                baseline_label=f"at {first['n']:,} (same run)",
                baseline_unit="ms/contact",
                target=("<=", FLATNESS_TARGET) if proc != "emulator" else None,
                note=f"{last['cpu_ms'][proc]:.4f} ms/contact at {last['n']:,}",
            )
        )
    result.metrics.append(
        common.Metric(
            f"contacts/s, {last['n']:,} / {first['n']:,}",
            round(last["rate"] / first["rate"], 3) if first["rate"] else None,
            "x",
            baseline=round(first["rate"]),
            baseline_label=f"at {first['n']:,}",
            baseline_unit="contacts/s",
            note="flat = ~1.0",
        )
    )
    result.notes.append(
        "CPU is counted from the INSERT's commit until the queue is empty; the INSERT itself "
        "(the app's write plus mcsync's triggers) cost Postgres "
        + ", ".join(f"{r['insert_postgres_s']:.1f} s at {r['n']:,}" for r in runs)
        + "."
    )
    result.series = {
        "sizes": [r["n"] for r in runs],
        "cpu_ms_per_contact": {
            p: [round(r["cpu_ms"][p], 5) for r in runs] for p in common.PROCESSES
        },
        "contacts_per_s": [round(r["rate"], 1) for r in runs],
        "peak_rss_mb": [round(r["peak_rss_mb"], 1) for r in runs],
        "tables": {str(r["n"]): r["tables"] for r in runs},
        # Bytes on disk per table once mirrored: divide by the size for bytes per contact.
        "storage_bytes": {str(r["n"]): r["storage"] for r in runs},
    }
    for r in runs:
        if r["profile"]:
            result.notes.append(f"cProfile of the worker, import of {r['n']:,}: {r['profile']}")
    return result
