"""6. Noisy neighbour: one user's big import must not slow the other users' live edits.

30 users, each with their own Mailchimp account and audience in one emulator (20 ms per call +
1 ms per batch member, its own process), one database, and `mcsync worker` as a subprocess
(then again with two worker processes sharing the accounts). The 29 other users each have a few
synced contacts; a single driver commits one UPDATE of `first_name` at a steady rate, round
robin over those users, each on a contact not edited before (so the member's `last_changed_at`
in the emulator is that edit's applied time). First a quiet phase (no import), then user 0
imports 50,000 contacts in one INSERT ... SELECT (on a thread, so the edits keep their pace)
and the edits go on until the queue is empty. Latency = applied - commit, as in the live
latency scenario. Target: p99 during the import <= max(2 x quiet p99, quiet p99 + 200 ms), the
quiet phase of the same run being the baseline.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from contextlib import ExitStack
from typing import Any

import psycopg

from benchmarks.common import (
    Context,
    Metric,
    ScenarioResult,
    WorkerProcess,
    add_account,
    cpu_meter,
    emulator,
    insert_contacts,
    log,
    members_by_email,
    mirror_problems,
    percentile,
    wait_for_empty_queue,
)
from benchmarks.cpu import ms_per_contact

# The importer's pending work only (the others' edits keep the whole queue busy).
PENDING_FOR_USER = """
SELECT (SELECT count(*) FROM mcsync.mailchimp_sync_queue WHERE user_id = %(u)s)
     + (SELECT coalesce(sum(cardinality(contact_ids)), 0)
          FROM mcsync.mailchimp_sync_bulk WHERE user_id = %(u)s)"""

NAME = "neighbour"
TITLE = "Noisy neighbour: 30 accounts, one imports, the others edit (20 ms/call + 1 ms/member)"

USERS = 30
PER_CALL_MS = 20.0
PER_MEMBER_MS = 1.0
EDITS_PER_S = 20.0  # all other users together


def _contacts(url: str, user_id: uuid.UUID) -> list[tuple[uuid.UUID, str]]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT id, lower(email) FROM contacts WHERE user_id = %s ORDER BY email", (user_id,)
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


def _one_run(
    ctx: Context, n_import: int, workers: int, quiet_s: float, cap_s: float
) -> dict[str, Any]:
    url = ctx.dbs.create(f"neighbour_{workers}w")
    edits_per_user = math.ceil(EDITS_PER_S * (quiet_s + cap_s) / (USERS - 1)) + 1
    try:
        with emulator(PER_CALL_MS, PER_MEMBER_MS) as emu, ExitStack() as stack:
            accounts = [add_account(url, emu, f"neighbour-{i}") for i in range(USERS)]
            importer, others = accounts[0], accounts[1:]
            for i, account in enumerate(others):
                insert_contacts(url, account.user_id, edits_per_user, prefix=f"u{i}-")
            procs = [
                stack.enter_context(
                    WorkerProcess(url, emu, ctx.workdir, label=f"neighbour-{workers}w-{k}")
                )
                for k in range(workers)
            ]
            for w in procs:
                w.wait_started()
            wait_for_empty_queue(url, timeout=300)  # the others' initial sync
            queues = [_contacts(url, a.user_id) for a in others]
            audiences = {a.audience_id for a in others}
            meter = cpu_meter(ctx, emu, procs)

            commits: dict[str, tuple[float, str, str, str]] = {}  # email -> (t, value, phase, aud)
            import_started: list[float] = []
            import_done: list[float] = []

            def do_import() -> None:
                import_started.append(time.time())
                insert_contacts(url, importer.user_id, n_import, prefix="imp")

            log(f"neighbour[{workers}w]: quiet phase {quiet_s:.0f} s, {EDITS_PER_S:.0f} edits/s")
            with psycopg.connect(url, autocommit=True) as conn:
                phase_start = time.monotonic()
                i = 0
                next_at = time.monotonic()
                importer_thread: threading.Thread | None = None
                cpu_before = cpu_after = None
                last_check = 0.0
                while True:
                    now = time.monotonic()
                    if importer_thread is None and now - phase_start >= quiet_s:
                        log(f"neighbour[{workers}w]: user 0 imports {n_import:,} contacts")
                        cpu_before = meter.snapshot()
                        importer_thread = threading.Thread(target=do_import, daemon=True)
                        importer_thread.start()
                    if importer_thread is not None and not importer_thread.is_alive():
                        if now - last_check >= 0.25:
                            last_check = now
                            row = conn.execute(
                                PENDING_FOR_USER, {"u": importer.user_id}
                            ).fetchone()
                            if row and row[0] == 0:
                                import_done.append(time.time())
                                cpu_after = meter.snapshot()
                                break
                    if now - phase_start > quiet_s + cap_s:
                        log(f"neighbour[{workers}w]: import not drained within {cap_s:.0f} s")
                        break
                    if now < next_at:
                        time.sleep(min(next_at - now, 0.05))
                        continue
                    next_at += 1 / EDITS_PER_S
                    user = i % len(others)
                    if not queues[user]:
                        i += 1
                        continue
                    cid, email = queues[user].pop()
                    value = f"Edit{i}"
                    conn.execute("UPDATE contacts SET first_name = %s WHERE id = %s", (value, cid))
                    phase = "during" if import_started else "quiet"
                    commits[email] = (time.time(), value, phase, others[user].audience_id)
                    i += 1
            if importer_thread is not None:
                importer_thread.join()
            for w in procs:
                w.check_alive()
            wait_for_empty_queue(url, timeout=max(300.0, cap_s))
            if cpu_after is None:
                cpu_after = meter.snapshot()
            applied: dict[str, float] = {}
            for aud in audiences:
                for email, m in members_by_email(emu, aud).items():
                    if email in commits and m["merge_fields"].get("FNAME") == commits[email][1]:
                        applied[email] = m["last_changed_at"]
            problems = mirror_problems(url, importer, members_by_email(emu, importer.audience_id))
    finally:
        ctx.dbs.drop(url)

    lat: dict[str, list[float]] = {"quiet": [], "during": []}
    missing = 0
    for email, (t, _value, phase, _aud) in commits.items():
        if email in applied:
            lat[phase].append((applied[email] - t) * 1000)
        else:
            missing += 1
    drained_s = (import_done[0] - import_started[0]) if import_done and import_started else None
    cpu_s = cpu_after.since(cpu_before) if cpu_before is not None else {}
    return {
        "workers": workers,
        "lat": lat,
        "missing": missing,
        "problems": problems,
        "drained_s": drained_s,
        "cpu_ms": ms_per_contact(cpu_s, n_import) if cpu_s else {},
    }


def _target(quiet_p99: float) -> float:
    return max(2 * quiet_p99, quiet_p99 + 200.0)


def run(ctx: Context) -> ScenarioResult:
    n_import = 2_000 if ctx.quick else 50_000
    quiet_s = 2.0 if ctx.quick else 15.0
    cap_s = 30.0 if ctx.quick else 300.0
    worker_counts = (1,) if ctx.quick else (1, 2)
    result = ScenarioResult(
        NAME,
        TITLE,
        {
            "users": USERS,
            "import": n_import,
            "edits_per_s": EDITS_PER_S,
            "quiet_s": quiet_s,
            "workers": list(worker_counts),
        },
    )
    for workers in worker_counts:
        r = _one_run(ctx, n_import, workers, quiet_s, cap_s)
        quiet, during = r["lat"]["quiet"], r["lat"]["during"]
        label = f"{workers} worker{'s' if workers > 1 else ''}"
        if not quiet or not during:
            result.notes.append(f"{label}: too few edits measured ({len(quiet)}, {len(during)})")
            continue
        q50, q99 = percentile(quiet, 50), percentile(quiet, 99)
        result.metrics += [
            Metric(
                f"others' edit p50 during the import, {label}",
                round(percentile(during, 50), 1),
                "ms",
                baseline=round(q50, 1),
                baseline_label="quiet p50, same run",
            ),
            Metric(
                f"others' edit p99 during the import, {label}",
                round(percentile(during, 99), 1),
                "ms",
                baseline=round(q99, 1),
                baseline_label="quiet p99, same run",
                target=("<=", round(_target(q99), 1)),
                note="target = max(2 x quiet p99, quiet p99 + 200 ms)",
            ),
            Metric(
                f"import of {n_import:,} drained in, {label}",
                round(r["drained_s"], 1) if r["drained_s"] is not None else None,
                "s",
                note=f"{len(quiet)} edits quiet, {len(during)} during; "
                f"{r['problems']} import contacts not mirrored; {r['missing']} edits not applied",
            ),
        ]
        if r["cpu_ms"]:
            result.notes.append(
                f"{label}: CPU per imported contact during the import (edits included): "
                + ", ".join(f"{k} {v:.3f} ms" for k, v in r["cpu_ms"].items())
            )
        result.series[f"{workers}w"] = {
            "quiet": [round(x, 2) for x in quiet],
            "during": [round(x, 2) for x in during],
        }
    return result
