"""Shared setup for the benchmarks: embedded Postgres, databases, the emulator, accounts,
contacts, the worker as a subprocess, and the result types every scenario returns."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from cryptography.fernet import Fernet

from benchmarks.cpu import CpuMeter, ms_per_contact, postmaster_pid
from benchmarks.processes import stop_process
from mcsync.crypto import TokenCipher
from mcsync.demo import connect_emulator_account
from mcsync.embedded import EmbeddedPostgres, database_url, start_embedded_postgres
from mcsync.emulator.testing import EmulatorHandle
from mcsync.migrate import SQL_DIR, apply_migrations

ENCRYPTION_KEY = Fernet.generate_key().decode()
TEMPLATE_DB = "mcsync_bench_template"
EMAIL_DOMAIN = "coachmail.io"  # the emulator refuses example.com & co as fake addresses

# Mailchimp's modelled bulk limit: 10 calls in flight, 500 members a call, 100 ms + 1 ms/member.
PER_CALL_MS = 100.0
PER_MEMBER_MS = 1.0
MAX_IN_FLIGHT = 10
BATCH_SIZE = 500
MODELLED_LIMIT = (MAX_IN_FLIGHT * BATCH_SIZE) / ((PER_CALL_MS + BATCH_SIZE * PER_MEMBER_MS) / 1000)


# --- results -------------------------------------------------------------------------------


@dataclass
class Metric:
    """One line of a scenario's table. `target` is (op, threshold) with op '<=' or '>='."""

    name: str
    value: float | None
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    target: tuple[str, float] | None = None
    note: str = ""
    baseline_unit: str | None = None  # when the baseline is not in `unit` (e.g. a ratio's base)

    @property
    def met(self) -> bool | None:
        if self.target is None or self.value is None:
            return None
        op, threshold = self.target
        return self.value <= threshold if op == "<=" else self.value >= threshold

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["target"] = list(self.target) if self.target else None
        out["met"] = self.met
        return out


@dataclass
class ScenarioResult:
    name: str
    title: str
    sizes: dict[str, Any]
    metrics: list[Metric] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None
    series: dict[str, Any] = field(default_factory=dict)  # raw figures for the pictures

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "sizes": self.sizes,
            "metrics": [m.to_json() for m in self.metrics],
            "notes": self.notes,
            "seconds": round(self.seconds, 1),
            "error": self.error,
            "series": self.series,
        }


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- CPU per contact, per process --------------------------------------------------------

PROCESSES = ("worker", "postgres", "emulator")
# Issue 11's targets: Postgres and the worker each at most 0.10 ms of CPU per mirrored contact.
CPU_TARGET_MS = {"worker": 0.10, "postgres": 0.10}


def cpu_meter(ctx: Context, emu: BenchEmulator, workers: Sequence[WorkerProcess]) -> CpuMeter:
    """Meters the worker process(es), every postgres process and the emulator process."""
    return CpuMeter(
        {
            "worker": [w.pid for w in workers],
            "postgres": ctx.dbs.postmaster_pid,
            "emulator": emu.pid,
        }
    )


def cpu_metrics(
    cpu_s: dict[str, float],
    contacts: int,
    what: str = "contact",
    note: str = "",
    label: str = "",
) -> list[Metric]:
    """One line per process: CPU ms per mirrored contact (or per edit), with its target."""
    per = ms_per_contact(cpu_s, contacts)
    out = []
    for proc in PROCESSES:
        target = CPU_TARGET_MS.get(proc)
        out.append(
            Metric(
                f"{proc} CPU per {what}" + (f", {label}" if label else ""),
                round(per[proc], 4),
                f"ms/{what}",
                target=("<=", target) if target is not None and what == "contact" else None,
                note=f"{cpu_s[proc]:.2f} CPU s for {contacts:,}" + (f"; {note}" if note else ""),
            )
        )
    return out


def cpu_ceiling(cpu_s: dict[str, float], contacts: int, cores: int) -> tuple[float, str]:
    """The fastest rate (contacts/s) this machine's CPU allows at the measured cost per
    contact: all processes share `cores`; the worker and the emulator are one process each,
    so each also caps at one core."""
    per_s = {k: v / contacts for k, v in cpu_s.items() if contacts}
    total = sum(per_s.values())
    bounds = {f"{cores} cores / sum": cores / total if total else float("inf")}
    for proc in ("worker", "emulator"):
        if per_s.get(proc):
            bounds[f"1 core / {proc}"] = 1 / per_s[proc]
    limit = min(bounds.values())
    parts = " + ".join(f"{per_s[k] * 1000:.3f} ({k})" for k in PROCESSES if k in per_s)
    text = (
        f"CPU per contact {parts} = {total * 1000:.3f} ms; ceiling = min("
        + ", ".join(f"{k} = {v:,.0f}/s" for k, v in bounds.items())
        + f") = {limit:,.0f} contacts/s"
    )
    return limit, text


# --- the machine ---------------------------------------------------------------------------


def machine_info(pg_url: str) -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb: float | None = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    with psycopg.connect(pg_url, autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        pg_version = row[0] if row else "unknown"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": mem_gb,
        "python": platform.python_version(),
        "postgres": pg_version,
        "os": f"{platform.system()} {platform.release()}",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


# --- Postgres ------------------------------------------------------------------------------


class Databases:
    """One embedded server for the whole run; a fresh migrated database per scenario step."""

    def __init__(self) -> None:
        log("starting embedded PostgreSQL")
        self.pg: EmbeddedPostgres = start_embedded_postgres()
        self.admin_url = self.pg.url
        self.postmaster_pid = postmaster_pid(self.pg.data_dir)
        self._made: list[str] = []
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}"')
            conn.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
        url = database_url(self.admin_url, TEMPLATE_DB)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute((SQL_DIR / "example_contacts.sql").read_text().encode())
        apply_migrations(url)

    def create(self, hint: str) -> str:
        name = f"bench_{hint}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"')
        self._made.append(name)
        return database_url(self.admin_url, name)

    def drop(self, url: str) -> None:
        name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            # Write out what the step left dirty now, so the next step's CPU and latency are
            # not charged for it: in the 2026-12-02 full run the neighbour scenario, right after
            # the 1,000,000 import, measured PostgreSQL at 1.6-3.7 ms per contact (0.2 alone).
            conn.execute("CHECKPOINT")

    @contextmanager
    def scratch(self, hint: str) -> Iterator[str]:
        """A fresh migrated database for one scenario step, dropped when the step ends."""
        url = self.create(hint)
        try:
            yield url
        finally:
            self.drop(url)

    def close(self) -> None:
        self.pg.stop()


def execute(url: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql.encode() if params is None else sql, params)
        return cur.fetchall() if cur.description else []


# Pending work: queue rows plus the ids of imports not expanded yet (mcsync.mailchimp_sync_bulk).
PENDING = """SELECT (SELECT count(*) FROM mcsync.mailchimp_sync_queue)
                  + (SELECT coalesce(sum(cardinality(contact_ids)), 0)
                       FROM mcsync.mailchimp_sync_bulk)"""


def queue_empty(conn: psycopg.Connection[Any]) -> bool:
    return queue_count(conn) == 0


def queue_count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(PENDING).fetchone()
    return int(row[0]) if row else 0


def wait_for_empty_queue(
    url: str, timeout: float, interval: float = 0.05, on_tick: Callable[[], None] | None = None
) -> float:
    """Block until the queue is empty; returns time.time() when it was seen empty."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            if queue_empty(conn):
                return time.time()
            if time.monotonic() > deadline:
                raise TimeoutError(f"queue still has {queue_count(conn)} rows after {timeout}s")
            if on_tick is not None:
                on_tick()
            time.sleep(interval)


INSERT_CONTACTS = f"""
INSERT INTO contacts (user_id, first_name, last_name, email, phone, tags)
SELECT %(user_id)s, 'First' || g, 'Last' || g,
       %(prefix)s || g || '@{EMAIL_DOMAIN}', NULL, ARRAY['import', 'lead']
  FROM generate_series(1, %(n)s) AS g
"""


def insert_contacts(url: str, user_id: uuid.UUID, n: int, prefix: str = "c") -> float:
    """The CSV path: n contacts in one INSERT ... SELECT. Returns time.time() after commit."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(INSERT_CONTACTS, {"user_id": user_id, "n": n, "prefix": prefix})
        return time.time()


def contacts_of(url: str, user_id: uuid.UUID) -> list[tuple[uuid.UUID, str]]:
    """A user's contacts as (id, lower-cased email), ordered by email."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT id, lower(email) FROM contacts WHERE user_id = %s ORDER BY email", (user_id,)
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


# --- the emulator and accounts -------------------------------------------------------------


@dataclass
class BenchEmulator(EmulatorHandle):
    """The emulator running as its own process (`benchmarks._emulator`), with its pid."""

    pid: int


@contextmanager
def emulator(per_call_ms: float = 0.0, per_member_ms: float = 0.0) -> Iterator[BenchEmulator]:
    """Start the emulator as a separate process (so its CPU is measured apart), stop on exit."""
    from mcsync.emulator.admin_client import EmulatorAdmin

    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks._emulator", str(per_call_ms), str(per_member_ms)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().decode().strip()
        if not url.startswith("http"):
            raise RuntimeError(f"the emulator process did not start (exit {proc.poll()})")
        admin = EmulatorAdmin(url, timeout=600.0)
        try:
            yield BenchEmulator(url, admin, proc.pid)
        finally:
            admin.close()
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass(frozen=True)
class BenchAccount:
    user_id: uuid.UUID
    audience_id: str


def add_account(url: str, emu: BenchEmulator, label: str) -> BenchAccount:
    """A Mailchimp account with one audience in the emulator, connected for a new user."""
    audience_id = f"aud{uuid.uuid4().hex[:8]}"
    user_id = uuid.uuid4()
    with psycopg.connect(url, autocommit=True) as conn:
        connect_emulator_account(
            conn,
            TokenCipher([ENCRYPTION_KEY]),
            emu,
            user_id=user_id,
            account_name=f"Bench {label}",
            audience={"id": audience_id, "name": label},
        )
    return BenchAccount(user_id, audience_id)


def members_by_email(emu: Any, audience_id: str) -> dict[str, dict[str, Any]]:
    return {m["email_address"].lower(): m for m in emu.admin.members(audience_id)}


def mirror_problems(url: str, account: BenchAccount, members: dict[str, dict[str, Any]]) -> int:
    """How many contacts the audience does not mirror (missing, wrong name, missing tag)."""
    rows = execute(
        url,
        "SELECT lower(btrim(email)), first_name, last_name, tags FROM contacts"
        " WHERE user_id = %s AND email IS NOT NULL",
        (account.user_id,),
    )
    problems = 0
    for email, first, last, tags in rows:
        m = members.get(email)
        if m is None or m["status"] != "subscribed":
            problems += 1
            continue
        mf = m["merge_fields"]
        have = {t["name"].casefold() for t in m["tags"]}
        if (
            (mf.get("FNAME") or "") != (first or "")
            or (mf.get("LNAME") or "") != (last or "")
            or any(t.casefold() not in have for t in tags)
        ):
            problems += 1
    problems += max(0, len(members) - len(rows))  # members no contact accounts for
    return problems


# --- the worker as a subprocess ------------------------------------------------------------


def _proc_status_kb(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class WorkerProcess:
    """`mcsync worker` in its own process (as deployed), with its memory sampled.

    listen=False runs the same worker with NOTIFY ignored (polling only) through
    `benchmarks._worker`, since the CLI has no flag for that."""

    def __init__(
        self,
        db_url: str,
        emu: Any,
        logdir: Path,
        *,
        listen: bool = True,
        env: dict[str, str] | None = None,
        profile: Path | None = None,
        label: str = "worker",
    ) -> None:
        self.log_path = logdir / f"{label}-{uuid.uuid4().hex[:6]}.log"
        self.environ = {
            **os.environ,
            "DATABASE_URL": db_url,
            "MCSYNC_ENCRYPTION_KEYS": ENCRYPTION_KEY,
            "MAILCHIMP_API_URL": emu.api_url,
            "MAILCHIMP_LOGIN_URL": emu.login_url,
            "MCSYNC_MAX_IN_FLIGHT": str(MAX_IN_FLIGHT),
            **(env or {}),
        }
        prefix = [sys.executable]
        if profile is not None:
            prefix += ["-m", "cProfile", "-o", str(profile)]
        if listen:
            self.argv = [*prefix, "-m", "mcsync.cli", "worker"]
        else:
            self.argv = [*prefix, "-m", "benchmarks._worker", "--no-listen"]
        self.proc: subprocess.Popen[bytes] | None = None
        self.peak_rss_kb = 0  # VmHWM: the kernel's own high-water mark
        self.samples: list[tuple[float, int]] = []  # (monotonic, VmRSS kB)
        self._stop_sampling = threading.Event()
        self._sampler: threading.Thread | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def start(self) -> WorkerProcess:
        self._log_file = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.argv, env=self.environ, stdout=self._log_file, stderr=subprocess.STDOUT
        )
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        return self

    def _sample(self) -> None:
        assert self.proc is not None
        pid = self.proc.pid
        while not self._stop_sampling.is_set() and self.proc.poll() is None:
            hwm = _proc_status_kb(pid, "VmHWM")
            rss = _proc_status_kb(pid, "VmRSS")
            if hwm is not None:
                self.peak_rss_kb = max(self.peak_rss_kb, hwm)
            if rss is not None:
                self.samples.append((time.monotonic(), rss))
            self._stop_sampling.wait(0.1)

    def wait_started(self, timeout: float = 30.0) -> None:
        """Until the worker logged that it runs (and, listening, that it listens)."""
        needle = b'"listening"' if "mcsync.cli" in self.argv else b'"worker_started"'
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if needle in self.log_path.read_bytes():
                return
            time.sleep(0.05)
        raise TimeoutError(f"worker did not start; log: {self.tail()}")

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"worker exited with {self.proc.returncode}: {self.tail()}")

    def tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        hwm = _proc_status_kb(self.proc.pid, "VmHWM")
        if hwm is not None:
            self.peak_rss_kb = max(self.peak_rss_kb, hwm)
        stop_process(self.proc, grace=60)
        self._stop_sampling.set()
        if self._sampler is not None:
            self._sampler.join(5)
        self._log_file.close()

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Context:
    """What every scenario gets."""

    dbs: Databases
    quick: bool
    workdir: Path
    profile: bool = False
    options: dict[str, Any] = field(default_factory=dict)  # scenario knobs from the CLI

    @classmethod
    def make(
        cls, quick: bool, profile: bool = False, options: dict[str, Any] | None = None
    ) -> Context:
        workdir = Path(tempfile.mkdtemp(prefix="mcsync-bench-"))
        return cls(Databases(), quick, workdir, profile, dict(options or {}))
