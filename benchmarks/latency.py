"""1. Live latency: single-contact edits, commit to the emulator applying the change.

The worker runs as its own process. Each edit is one autocommit UPDATE of a synced column of a
different (already synced) contact; its commit time is time.time() when the UPDATE returns, its
applied time is the emulator's `last_changed_at` for that member (also time.time(), same
machine). With NOTIFY, edits are committed one at a time: the next one only after the queue is
empty again. The baseline (NOTIFY off, default 2 s poll) commits edits at random intervals
(uniform 0-400 ms, open loop), so each lands at a random phase of the poll timer, as in real use.
"""

from __future__ import annotations

import random
import time
import uuid

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
    members_by_email,
    percentile,
    wait_for_empty_queue,
)

NAME = "latency"
TITLE = "Live latency (commit -> applied in Mailchimp), emulator latency 0"


def _contacts(url: str, user_id: uuid.UUID) -> list[tuple[uuid.UUID, str]]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT id, lower(email) FROM contacts WHERE user_id = %s ORDER BY email", (user_id,)
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


def run(ctx: Context) -> ScenarioResult:
    n_live = 50 if ctx.quick else 1000
    n_poll = 6 if ctx.quick else 60
    result = ScenarioResult(NAME, TITLE, {"edits_notify": n_live, "edits_polling": n_poll})
    url = ctx.dbs.create("latency")
    try:
        with emulator() as emu:
            account = add_account(url, emu, "latency")
            insert_contacts(url, account.user_id, n_live + n_poll)
            contacts = _contacts(url, account.user_id)
            live, polled = contacts[:n_live], contacts[n_live:]

            # --- with NOTIFY (the default worker) -------------------------------------------
            commits: dict[str, tuple[float, str]] = {}
            with WorkerProcess(url, emu, ctx.workdir, label="latency-listen") as worker:
                worker.wait_started()
                wait_for_empty_queue(url, timeout=120)  # the initial full sync
                log(f"latency: {n_live} edits, one at a time, NOTIFY on")
                meter = cpu_meter(ctx, emu, [worker])
                cpu_before = meter.snapshot()
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute("SELECT 1")
                    for i, (cid, email) in enumerate(live):
                        value = f"Live{i}"
                        conn.execute(
                            "UPDATE contacts SET first_name = %s WHERE id = %s", (value, cid)
                        )
                        commits[email] = (time.time(), value)
                        deadline = time.monotonic() + 30
                        while True:
                            time.sleep(0.003)
                            row = conn.execute(
                                "SELECT EXISTS (SELECT 1 FROM mcsync.mailchimp_sync_queue)"
                            ).fetchone()
                            if not (row and row[0]):
                                break
                            if time.monotonic() > deadline:
                                worker.check_alive()
                                raise TimeoutError(f"edit {i} not applied within 30 s")
                cpu_s = meter.snapshot().since(cpu_before)
            live_lat = _latencies(emu, account.audience_id, commits)

            # --- baseline: polling only -----------------------------------------------------
            commits = {}
            with WorkerProcess(
                url, emu, ctx.workdir, listen=False, label="latency-poll"
            ) as worker:
                worker.wait_started()
                time.sleep(0.5)
                log(f"latency: {n_poll} edits at random intervals, NOTIFY off (poll 2 s)")
                rng = random.Random(6)
                with psycopg.connect(url, autocommit=True) as conn:
                    for i, (cid, email) in enumerate(polled):
                        time.sleep(rng.uniform(0, 0.4))
                        value = f"Poll{i}"
                        conn.execute(
                            "UPDATE contacts SET first_name = %s WHERE id = %s", (value, cid)
                        )
                        commits[email] = (time.time(), value)
                wait_for_empty_queue(url, timeout=60)
            poll_lat = _latencies(emu, account.audience_id, commits)
    finally:
        ctx.dbs.drop(url)

    for q, target in ((50, 10.0), (95, None), (99, 50.0)):
        result.metrics.append(
            Metric(
                name=f"p{q} commit -> applied",
                value=round(percentile(live_lat, q), 1),
                unit="ms",
                baseline=round(percentile(poll_lat, q), 1),
                baseline_label="polling only (NOTIFY off, 2 s poll)",
                target=("<=", target) if target is not None else None,
            )
        )
    result.metrics.append(
        Metric(
            name="max commit -> applied",
            value=round(max(live_lat), 1),
            unit="ms",
            baseline=round(max(poll_lat), 1),
            baseline_label="polling only (NOTIFY off, 2 s poll)",
        )
    )
    result.metrics += cpu_metrics(
        cpu_s, len(live_lat), what="edit", note="postgres: the driver polling the queue too"
    )
    result.series = {"notify": [round(x, 2) for x in live_lat],
                     "polling": [round(x, 2) for x in poll_lat]}
    result.notes.append(
        f"{len(live_lat)} edits with NOTIFY (closed loop), {len(poll_lat)} edits polling only "
        "(open loop, random spacing); each edit is one UPDATE of first_name on its own contact."
    )
    return result


def _latencies(emu: object, audience_id: str, commits: dict[str, tuple[float, str]]) -> list[float]:
    members = members_by_email(emu, audience_id)
    out = []
    for email, (committed, value) in commits.items():
        m = members[email]
        if m["merge_fields"].get("FNAME") != value:
            raise AssertionError(f"{email}: FNAME is {m['merge_fields'].get('FNAME')!r}")
        out.append((m["last_changed_at"] - committed) * 1000)
    return out
