"""3. Trigger cost: what mcsync adds to the app's own writes to `contacts`.

Three copies of the same migrated database, the user connected in each (so the triggers do
their full work: every row is queued):
  with       mcsync as installed: the statement triggers and its email index;
  no-trig    the triggers dropped (the index kept): the baseline for the targets;
  bare       the triggers and mcsync's index dropped: the app before installing mcsync.
Bulk: the same INSERT ... SELECT into an empty table (queue emptied too), repeated in rotating
order, median. Single row: autocommit INSERTs of new contacts and UPDATEs of a synced column of
existing contacts (queue empty, as when the worker keeps up), interleaved in rounds, median.
"""

from __future__ import annotations

import time
import uuid

import psycopg

from benchmarks.common import (
    PENDING,
    Context,
    Metric,
    ScenarioResult,
    add_account,
    emulator,
    execute,
    insert_contacts,
    log,
    median,
    percentile,
)

NAME = "triggers"
TITLE = "Trigger cost on the app's writes to contacts"

DROP_TRIGGERS = """
DROP TRIGGER mcsync_contacts_inserted ON contacts;
DROP TRIGGER mcsync_contacts_updated ON contacts;
DROP TRIGGER mcsync_contacts_deleted ON contacts;
"""
VARIANTS = ("with", "no-trig", "bare")
TRUNCATE_ALL = "TRUNCATE contacts, mcsync.mailchimp_sync_queue, mcsync.mailchimp_sync_bulk"


def run(ctx: Context) -> ScenarioResult:
    n = 10_000 if ctx.quick else 100_000
    reps = 2 if ctx.quick else 3
    n_single = 200 if ctx.quick else 2_000
    result = ScenarioResult(
        NAME, TITLE, {"bulk_rows": n, "bulk_repeats": reps, "single_row_ops": n_single}
    )
    urls = {v: ctx.dbs.create(f"trig_{v.replace('-', '')}") for v in VARIANTS}
    try:
        users: dict[str, uuid.UUID] = {}
        with emulator() as emu:  # only to register the connection; no worker runs here
            for v, url in urls.items():
                users[v] = add_account(url, emu, f"trig-{v}").user_id
        execute(urls["no-trig"], DROP_TRIGGERS)
        execute(urls["bare"], DROP_TRIGGERS + "DROP INDEX contacts_mcsync_email_idx;")

        bulk: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for rep in range(reps):
            order = VARIANTS[rep % 3 :] + VARIANTS[: rep % 3]
            for v in order:
                execute(urls[v], TRUNCATE_ALL)
                execute(urls[v], "CHECKPOINT")
                started = time.perf_counter()
                insert_contacts(urls[v], users[v], n)
                bulk[v].append(time.perf_counter() - started)
        queued = execute(urls["with"], PENDING)[0][0]
        log(
            "triggers: bulk medians "
            + ", ".join(f"{v} {median(bulk[v]):.2f} s" for v in VARIANTS)
        )

        single = _single_rows(urls, users, n_single)
    finally:
        for url in urls.values():
            ctx.dbs.drop(url)

    with_s, without_s, bare_s = (median(bulk[v]) for v in VARIANTS)
    result.metrics += [
        Metric(
            f"bulk import of {n:,} rows",
            round(with_s, 3),
            "s",
            baseline=round(without_s, 3),
            baseline_label="triggers dropped",
            note=f"app without mcsync at all (no index either): {bare_s:.3f} s",
        ),
        Metric(
            "bulk ratio with / without triggers",
            round(with_s / without_s, 3),
            "x",
            target=("<=", 1.3),
            note=f"vs no mcsync at all: {with_s / bare_s:.2f}x",
        ),
    ]
    for op in ("insert", "update"):
        w, wo = single[("with", op)], single[("no-trig", op)]
        result.metrics.append(
            Metric(
                f"single-row {op}, median",
                round(median(w), 3),
                "ms",
                baseline=round(median(wo), 3),
                baseline_label="triggers dropped",
                note=f"p95 {percentile(w, 95):.3f} vs {percentile(wo, 95):.3f} ms",
            )
        )
        result.metrics.append(
            Metric(
                f"single-row {op} overhead",
                round(median(w) - median(wo), 3),
                "ms",
                target=("<=", 0.3),
                note=f"bare table: {median(single[('bare', op)]):.3f} ms",
            )
        )
    result.notes.append(
        f"the import with triggers queued {queued:,} rows per run (the user is connected); "
        "timings are client-side wall clock over a Unix socket, autocommit, fsync on."
    )
    return result


def _single_rows(
    urls: dict[str, str], users: dict[str, uuid.UUID], n: int
) -> dict[tuple[str, str], list[float]]:
    conns = {v: psycopg.connect(url, autocommit=True) for v, url in urls.items()}
    times: dict[tuple[str, str], list[float]] = {(v, op): [] for v in VARIANTS for op in
                                                 ("insert", "update")}
    try:
        ids: dict[str, list[uuid.UUID]] = {}
        for v, conn in conns.items():
            conn.execute(TRUNCATE_ALL)
            conn.execute(
                "INSERT INTO contacts (user_id, email, first_name) SELECT %s,"
                " 's' || g || '@coachmail.io', 'S' || g FROM generate_series(1, %s) g",
                (users[v], n),
            )
            # the worker has caught up
            conn.execute("TRUNCATE mcsync.mailchimp_sync_queue, mcsync.mailchimp_sync_bulk")
            conn.execute("VACUUM ANALYZE contacts")
            ids[v] = [r[0] for r in conn.execute("SELECT id FROM contacts ORDER BY id")]

        insert = (
            "INSERT INTO contacts (user_id, email, first_name, tags) VALUES (%s, %s, %s, %s)"
        )
        update = "UPDATE contacts SET first_name = %s WHERE id = %s"
        round_size = 50
        for start in range(0, n, round_size):
            for v in VARIANTS:
                conn, uid = conns[v], users[v]
                batch = range(start, min(n, start + round_size))
                for i in batch:
                    t0 = time.perf_counter()
                    conn.execute(insert, (uid, f"new{i}@coachmail.io", f"New{i}", ["lead"]))
                    times[(v, "insert")].append((time.perf_counter() - t0) * 1000)
                for i in batch:
                    t0 = time.perf_counter()
                    conn.execute(update, (f"Renamed{i}", ids[v][i]))
                    times[(v, "update")].append((time.perf_counter() - t0) * 1000)
    finally:
        for conn in conns.values():
            conn.close()
    return times
