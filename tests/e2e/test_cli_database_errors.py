"""The operator's database mistakes, made from the command line as a newcomer makes them: each
gets one line that says what to fix, exit status 1, no traceback, and nothing applied.

Found following docs/install.md: `mcsync migrate` as a role that owns `contacts` but cannot
create a schema in the database, `mcsync status` before `mcsync migrate`, and any command with a
database that does not answer, each ended in a psycopg traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid

import psycopg
from cryptography.fernet import Fernet
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

MCSYNC = [sys.executable, "-m", "mcsync.cli"]
CONTACTS = (
    "CREATE TABLE contacts (id uuid PRIMARY KEY DEFAULT gen_random_uuid(),"
    " user_id uuid NOT NULL, first_name text, last_name text, email text, phone text,"
    " tags text[] NOT NULL DEFAULT '{}')"
)


def _mcsync(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MCSYNC, *args, "--database-url", database_url],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _as(url: str, user: str, password: str) -> str:
    params = conninfo_to_dict(url)
    params.update(user=user, password=password)
    return make_conninfo("", **{k: v for k, v in params.items() if v is not None})


def test_migrate_by_an_owner_without_create_on_the_database_says_so_and_applies_nothing(
    empty_db_url: str,
) -> None:
    owner = f"cli_owner_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(empty_db_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'cli-owner'").format(sql.Identifier(owner))
        )
        admin.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(owner)))
    owner_url = _as(empty_db_url, owner, "cli-owner")
    try:
        with psycopg.connect(owner_url, autocommit=True) as conn:
            conn.execute(CONTACTS)
        run = _mcsync("migrate", database_url=owner_url)
        assert run.returncode == 1, run
        assert "Traceback" not in run.stderr
        assert run.stderr.startswith("mcsync migrate: permission denied for database"), run.stderr
        assert "CREATE on the database" in run.stderr
        assert "cli-owner" not in run.stderr  # the password never
        with psycopg.connect(empty_db_url, autocommit=True) as admin:
            left = admin.execute(
                "SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname LIKE 'mcsync%'"
            ).fetchall()
            triggers = admin.execute(
                "SELECT count(*) FROM pg_catalog.pg_trigger"
                " WHERE tgrelid = 'public.contacts'::regclass AND NOT tgisinternal"
            ).fetchone()
        assert left == [] and triggers == (0,)
    finally:
        with psycopg.connect(empty_db_url, autocommit=True) as admin:
            me = admin.execute("SELECT current_user").fetchone()[0]  # type: ignore[index]
            for statement in ("REASSIGN OWNED BY {} TO {}", "DROP OWNED BY {}", "DROP ROLE {}"):
                admin.execute(
                    sql.SQL(statement).format(sql.Identifier(owner), sql.Identifier(me))
                )


def test_status_before_migrate_says_to_migrate(empty_db_url: str) -> None:
    run = _mcsync("status", database_url=empty_db_url)
    assert run.returncode == 1, run
    assert "Traceback" not in run.stderr
    assert run.stderr.startswith("mcsync status: relation"), run.stderr
    assert "Run `mcsync migrate` first" in run.stderr


def test_a_database_that_does_not_answer_is_one_line_without_the_password() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://owner:hunter2-secret@127.0.0.1:{port}/app?connect_timeout=3"
    user = ["--user-id", str(uuid.uuid4())]
    # `=`: a Fernet key is urlsafe base64 and may start with "-", which argparse would read as
    # an option after a space (1 run in 64 failed so).
    keys = [f"--encryption-keys={Fernet.generate_key().decode()}"]
    for command in (
        ["status"],
        ["migrate"],
        ["disconnect", *user],
        ["sync-now", *user, *keys],  # these open a pool for the command
        ["verify", *user, *keys],
    ):
        run = _mcsync(*command, database_url=url)
        assert run.returncode == 1, run
        assert "Traceback" not in run.stderr, run.stderr
        assert run.stderr.startswith(f"mcsync {command[0]}: cannot use the database:"), run.stderr
        assert "hunter2" not in run.stderr + run.stdout
        assert f"port {port} failed" in run.stderr, run.stderr  # the reason, not a pool timeout
