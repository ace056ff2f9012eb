"""The README's first command, and the operator CLI, run as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from tests.support.harness import ENCRYPTION_KEY, SyncHarness

MCSYNC = [sys.executable, "-m", "mcsync.cli"]


def test_demo_once_shows_the_mirror_and_exits_zero(tmp_path: Path) -> None:
    result = subprocess.run(
        [*MCSYNC, "demo", "--once"],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "TMPDIR": str(tmp_path)},  # where its database directory goes
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "mirror check: OK" in result.stdout
    assert "chloe.dubois@coachmail.io" in result.stdout  # the renamed member
    assert "(not synced)" in result.stdout  # the contact without an email
    # The member mcsync does not own is shown with its tag.
    (walk_in,) = [line for line in result.stdout.splitlines() if "(no contact)" in line]
    assert "walkin@coachmail.io" in walk_in and "website-signup" in walk_in
    assert list(tmp_path.glob("mcsync-pg-*")) == []  # the embedded PostgreSQL's data: gone


def _env(sync: SyncHarness) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": sync.db_url,
        "MCSYNC_ENCRYPTION_KEYS": ENCRYPTION_KEY,
        "MAILCHIMP_API_URL": sync.emulator.api_url,
    }


def test_connect_worker_once_status_and_disconnect_from_the_command_line(
    sync: SyncHarness,
) -> None:
    account = sync.admin.create_account(
        dc="us1",
        account_name="CLI",
        audiences=[{"id": "cli00001", "name": "CLI list", "double_optin": True}],
    )
    user_id = uuid.uuid4()
    sync.execute(
        "INSERT INTO contacts (user_id, email, first_name) VALUES (%s, 'cli@coachmail.io', 'Cli')",
        (user_id,),
    )
    env = _env(sync)
    run = subprocess.run(
        [*MCSYNC, "connect", "--user-id", str(user_id), "--access-token",
         account["access_token"], "--dc", "us1", "--audience-id", "cli00001"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "1 contacts queued" in run.stdout
    stored = sync.execute("SELECT * FROM mcsync.mailchimp_connections")[0]
    assert account["access_token"] not in stored["access_token_encrypted"]
    # The audience's settings are read from Mailchimp, as the OAuth path does.
    assert stored["double_optin"] is True and stored["audience_name"] == "CLI list"

    run = subprocess.run([*MCSYNC, "worker", "--once"], capture_output=True, text=True,
                         env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    members = {m["email_address"]: m for m in sync.admin.members("cli00001")}
    assert members["cli@coachmail.io"]["merge_fields"]["FNAME"] == "Cli"
    assert members["cli@coachmail.io"]["status"] == "pending"  # double opt-in
    # One JSON object per log line, and never the token.
    lines = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    assert any(line["event"] == "batch_done" for line in lines)
    assert account["access_token"] not in run.stderr

    run = subprocess.run([*MCSYNC, "status", "--json"], capture_output=True, text=True,
                         env=env, timeout=60)
    (row,) = json.loads(run.stdout)
    assert row["user_id"] == str(user_id) and row["sync_status"] == "active"
    assert row["pending"] == 0 and row["last_sync_at"] is not None

    run = subprocess.run([*MCSYNC, "disconnect", "--user-id", str(user_id)],
                         capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0
    assert sync.execute("SELECT * FROM mcsync.mailchimp_connections") == []
    # Mailchimp and the app's contacts are untouched.
    assert "cli@coachmail.io" in {m["email_address"] for m in sync.admin.members("cli00001")}
    assert len(sync.execute("SELECT * FROM contacts")) == 1


def test_worker_refuses_to_start_without_an_encryption_key(sync: SyncHarness) -> None:
    env = {**_env(sync), "MCSYNC_ENCRYPTION_KEYS": ""}
    run = subprocess.run([*MCSYNC, "worker", "--once"], capture_output=True, text=True,
                         env=env, timeout=60)
    assert run.returncode != 0
    assert "Fernet.generate_key()" in run.stderr


def test_migrate_command_reports_a_missing_contacts_table(empty_db_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": empty_db_url}
    run = subprocess.run([*MCSYNC, "migrate"], capture_output=True, text=True, env=env,
                         timeout=60)
    assert run.returncode == 1
    assert '"contacts" table was not found' in run.stderr


def test_sql_files_are_plain_ordered_migrations(repo_root: Path) -> None:
    names = sorted(p.name for p in (repo_root / "sql").glob("[0-9][0-9][0-9]_*.sql"))
    assert names[:2] == ["001_mcsync_tables.sql", "002_contacts_triggers.sql"]


def test_version_and_help_are_written_for_operators() -> None:
    from importlib.metadata import version

    run = subprocess.run([*MCSYNC, "--version"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == f"mcsync {version('mcsync')}"

    run = subprocess.run([*MCSYNC, "--help"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0
    assert "mirrors your app's Postgres contacts into Mailchimp" in run.stdout
    commands = ["migrate", "doctor", "rotate-keys", "worker", "status", "connect", "disconnect",
                "web", "sync-now", "verify", "demo", "emulator"]
    for command in commands:
        assert f"    {command} " in run.stdout, command
        sub = subprocess.run([*MCSYNC, command, "--help"], capture_output=True, text=True,
                             timeout=60)
        assert sub.returncode == 0 and "usage: mcsync " + command in sub.stdout
    # Setting flags name the environment variable they override.
    run = subprocess.run([*MCSYNC, "worker", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert "(env MCSYNC_METRICS_PORT" in " ".join(run.stdout.split())


def test_an_invalid_setting_flag_is_refused_with_its_variable_named() -> None:
    env = {**os.environ, "DATABASE_URL": "postgresql:///unused", "MCSYNC_ENCRYPTION_KEYS": ""}
    run = subprocess.run([*MCSYNC, "worker", "--max-in-flight", "11"], capture_output=True,
                         text=True, env=env, timeout=60)
    assert run.returncode != 0
    assert "MCSYNC_MAX_IN_FLIGHT" in run.stderr and "less than or equal to 10" in run.stderr


# Runs the real CLI in a fresh interpreter where `import pgserver` fails, as on a production
# install without the `demo` extra.
_WITHOUT_PGSERVER = """
import sys
sys.modules["pgserver"] = None  # makes `import pgserver` raise ImportError
from mcsync.cli import main
sys.exit(main(["demo", "--once"]))
"""


def test_demo_without_pgserver_says_how_to_install_it() -> None:
    run = subprocess.run([sys.executable, "-c", _WITHOUT_PGSERVER], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "pip install 'mcsync[demo]'" in run.stderr
    assert "Traceback" not in run.stderr


# Production code paths must not load the embedded PostgreSQL (pgserver is only in extras).
_PRODUCTION_IMPORTS = """
import sys
import mcsync.cli, mcsync.worker.runner, mcsync.web.app, mcsync.reconcile, mcsync.migrate
import mcsync.connections, mcsync.status, mcsync.worker.metrics
from mcsync.cli import build_parser
build_parser()
loaded = sorted(m for m in sys.modules if m == "pgserver" or m == "mcsync.embedded"
                or m == "mcsync.demo")
print(",".join(loaded))
"""


def test_production_code_paths_do_not_import_the_embedded_postgres() -> None:
    run = subprocess.run([sys.executable, "-c", _PRODUCTION_IMPORTS], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == ""
