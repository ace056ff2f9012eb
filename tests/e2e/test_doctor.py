"""`mcsync doctor` on real installs: a fresh one made as docs/install.md says prints all ok, and
each misconfiguration the doctor knows is produced for real on Postgres (or on the network) and
named by it, with its fix, and exit status 1.

The install is the Supabase-like one of test_supabase.py (its roles, default privileges, RLS on
`contacts`), then `mcsync migrate` and grants.sql, as the docs say. The doctor runs as the
`mcsync doctor` command (in process, its real argument parsing and output)."""

from __future__ import annotations

import io
import json
import logging
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import psycopg
import pytest
import structlog
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.asymmetric import ec

from mcsync.cli import build_parser
from mcsync.config import Settings
from mcsync.doctor import DoctorOptions, run_doctor
from mcsync.embedded import database_url
from mcsync.logging import configure_logging
from mcsync.migrate import SQL_DIR, apply_migrations
from mcsync.roles import render_roles
from mcsync.source import DEFAULT_MAPPING
from tests.conftest import _drop_database, _new_database
from tests.e2e.test_supabase import supabase_url  # noqa: F401  (the fixture)
from tests.support.harness import ENCRYPTION_KEY, SyncHarness
from tests.support.notify_proxy import notification_dropping_proxy
from tests.support.roles import FRESH_PREFIX

# --- a JWKS the test serves itself -----------------------------------------------------------


@contextmanager
def served(body: bytes, status: int = 200) -> Iterator[str]:
    """An HTTP server on loopback answering every GET with `body`; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/auth/v1/.well-known/jwks.json"
    finally:
        server.shutdown()
        server.server_close()


def es256_jwks() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid=str(uuid.uuid4()), alg="ES256", use="sig")
    return json.dumps({"keys": [jwk]}).encode()


@pytest.fixture
def jwks_url() -> Iterator[str]:
    with served(es256_jwks()) as url:
        yield url


# --- running the doctor ----------------------------------------------------------------------


@pytest.fixture
def doctor_env(
    supabase_url: str,  # noqa: F811
    jwks_url: str,
    emulator: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    """The environment an operator runs the doctor with: the owner's URL and the settings the
    processes have."""
    env = {
        "DATABASE_URL": supabase_url,
        "MCSYNC_ENCRYPTION_KEYS": ENCRYPTION_KEY,
        "MCSYNC_JWKS_URL": jwks_url,
        "MAILCHIMP_API_URL": emulator.api_url,
    }
    for name in ("MCSYNC_JWT_SECRET", "MCSYNC_CONFIG", "MCSYNC_SCHEMA"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture(autouse=True)
def logs_kept_apart() -> Iterator[io.StringIO]:
    """The JSON logs of what the doctor calls (the Mailchimp client's) go to a buffer, not to
    the stdout the test parses; the logging set-up is put back afterwards."""
    buffer = io.StringIO()
    root = logging.getLogger()
    handlers = list(root.handlers)
    configure_logging("INFO", stream=buffer)
    yield buffer
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    structlog.reset_defaults()


def main(argv: list[str]) -> int:
    """`mcsync ARGV` in process, as `mcsync.cli.main` runs it but without configuring logging
    (that would bind the process's log output to this test's captured, soon closed, stdout)."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


def doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, dict[str, str]]]:
    """Run `mcsync doctor --json ARGS`; the exit status and the checks by name."""
    capsys.readouterr()
    status = main(["doctor", "--json", *args])
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is (status == 0)
    return status, {c["name"]: c for c in out["checks"]}


def problems(checks: dict[str, dict[str, str]]) -> set[str]:
    return {name for name, c in checks.items() if c["status"] == "problem"}


def only_problem(checks: dict[str, dict[str, str]], name: str) -> dict[str, str]:
    assert problems(checks) == {name}, {n: checks[n]["detail"] for n in problems(checks)}
    assert checks[name]["fix"]
    return checks[name]


def execute(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement.encode())


@pytest.fixture
def connected(doctor_env: dict[str, str], emulator: Any) -> SyncHarness:
    """One user connected through the emulator, so tokens and --ping have something to check."""
    sync = SyncHarness(doctor_env["DATABASE_URL"], emulator)
    sync.add_user()
    return sync


# --- all ok ----------------------------------------------------------------------------------


def test_a_fresh_install_made_as_the_docs_say_prints_all_ok(
    connected: SyncHarness, capsys: pytest.CaptureFixture[str]
) -> None:
    status, checks = doctor(capsys, "--ping")
    assert status == 0
    assert {c["status"] for c in checks.values()} == {"ok"}, checks
    assert set(checks) == {
        "migrations", "mapping", "grants", "exposure", "postgrest", "tokens", "listen", "jwt",
        "mailchimp",
    }  # fmt: skip
    assert "1 connection(s)" in checks["mailchimp"]["detail"]
    assert "ES256" in checks["jwt"]["detail"]
    # The plain output: one line per check, and the verdict.
    assert main(["doctor"]) == 0
    text = capsys.readouterr().out
    assert text.rstrip().endswith("all ok")
    assert "problem" not in text


def test_the_legacy_secret_alone_is_ok_and_neither_is_a_problem(
    doctor_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("MCSYNC_JWKS_URL")
    monkeypatch.setenv("MCSYNC_JWT_SECRET", "a-legacy-hs256-secret-of-enough-length")
    status, checks = doctor(capsys)
    assert status == 0 and "legacy HS256" in checks["jwt"]["detail"]
    monkeypatch.delenv("MCSYNC_JWT_SECRET")
    status, checks = doctor(capsys)
    assert status == 1
    assert "neither MCSYNC_JWKS_URL nor MCSYNC_JWT_SECRET" in only_problem(checks, "jwt")["detail"]


# --- each problem, produced for real and named ----------------------------------------------


def _sql_dir_with(tmp_path: Path, migration: str, grants_extra: str = "") -> Path:
    """This mcsync's sql/ plus a later migration 099 (and grants.sql extended for it): what an
    upgrade ships."""
    sql_dir = tmp_path / "sql"
    shutil.copytree(SQL_DIR, sql_dir)
    (sql_dir / "099_doctor_later.sql").write_text(migration)
    grants = sql_dir / "grants.sql"
    grants.write_text(grants.read_text() + grants_extra)
    return sql_dir


def _run(url: str, env: dict[str, str], sql_dir: Path) -> dict[str, Any]:
    checks = run_doctor(
        DoctorOptions(
            settings=Settings(
                database_url=url,
                mcsync_encryption_keys=env["MCSYNC_ENCRYPTION_KEYS"],
                mailchimp_api_url=env["MAILCHIMP_API_URL"],
            ),
            schema="mcsync",
            mapping=DEFAULT_MAPPING,
            jwks_url=env["MCSYNC_JWKS_URL"],
            sql_dir=sql_dir,
        )
    )
    return {c.name: c for c in checks}


LATER_TABLE = """CREATE TABLE mcsync.doctor_later (id bigint PRIMARY KEY);
CALL mcsync.lock_down();
"""
LATER_GRANT = "\nGRANT SELECT, INSERT ON mcsync.doctor_later TO mcsync_worker;\n"


def test_a_migration_shipped_but_not_applied_is_named(
    doctor_env: dict[str, str], tmp_path: Path
) -> None:
    sql_dir = _sql_dir_with(tmp_path, LATER_TABLE, LATER_GRANT)
    checks = _run(doctor_env["DATABASE_URL"], doctor_env, sql_dir)
    assert checks["migrations"].status == "problem"
    assert "not applied yet: 099_doctor_later.sql" in checks["migrations"].detail
    assert "mcsync migrate" in checks["migrations"].fix


def test_an_applied_migration_edited_afterwards_is_named(
    doctor_env: dict[str, str], tmp_path: Path
) -> None:
    sql_dir = _sql_dir_with(tmp_path, "SELECT 1;\n")
    apply_migrations(doctor_env["DATABASE_URL"], sql_dir)
    (sql_dir / "099_doctor_later.sql").write_text("SELECT 2;\n")
    checks = _run(doctor_env["DATABASE_URL"], doctor_env, sql_dir)
    assert checks["migrations"].status == "problem"
    assert "edited: 099_doctor_later.sql" in checks["migrations"].detail


def test_grants_not_applied_again_after_a_later_migration_are_named(
    doctor_env: dict[str, str], tmp_path: Path
) -> None:
    """The issue's case: `mcsync migrate` adds a table the worker uses, grants.sql is not
    re-applied, so the worker would fail on it."""
    url = doctor_env["DATABASE_URL"]
    sql_dir = _sql_dir_with(tmp_path, LATER_TABLE, LATER_GRANT)
    apply_migrations(url, sql_dir)
    checks = _run(url, doctor_env, sql_dir)
    assert checks["migrations"].status == "ok"
    grants = checks["grants"]
    assert grants.status == "problem"
    assert "mcsync_fresh_worker lacks INSERT, SELECT on mcsync.doctor_later" in grants.detail
    assert "mcsync.doctor_later has no policy" in grants.detail
    assert "mcsync sql --grants" in grants.fix
    # The fix, done: grants.sql (the upgrade's) applied again.
    execute(url, render_roles((sql_dir / "grants.sql").read_text(), FRESH_PREFIX))
    assert _run(url, doctor_env, sql_dir)["grants"].status == "ok"


def test_a_privilege_a_role_never_uses_is_named(
    doctor_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    execute(
        doctor_env["DATABASE_URL"],
        "GRANT TRUNCATE ON mcsync.mailchimp_sync_queue TO mcsync_fresh_worker",
        "GRANT SELECT ON mcsync.mcsync_oauth_states TO mcsync_fresh_worker",
    )
    status, checks = doctor(capsys)
    assert status == 1
    detail = only_problem(checks, "grants")["detail"]
    assert "mcsync_fresh_worker has TRUNCATE on mcsync.mailchimp_sync_queue" in detail
    assert "mcsync_fresh_worker has SELECT on mcsync.mcsync_oauth_states" in detail


def test_a_role_missing_is_named(doctor_env: dict[str, str], tmp_path: Path) -> None:
    # grants.sql of an upgrade that adds a third role, never applied here.
    sql_dir = _sql_dir_with(
        tmp_path,
        "SELECT 1;\n",
        "\nDO $$ BEGIN CREATE ROLE mcsync_doctor_third NOLOGIN; END $$;\n"
        "GRANT USAGE ON SCHEMA mcsync TO mcsync_doctor_third;\n",
    )
    apply_migrations(doctor_env["DATABASE_URL"], sql_dir)
    checks = _run(doctor_env["DATABASE_URL"], doctor_env, sql_dir)
    assert checks["grants"].status == "problem"
    assert "role(s) missing: mcsync_doctor_third" in checks["grants"].detail


def test_mcsync_usable_by_public_or_another_role_names_each_one(
    doctor_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = doctor_env["DATABASE_URL"]
    execute(
        url,
        "GRANT USAGE ON SCHEMA mcsync TO anon",
        "GRANT SELECT ON mcsync.mailchimp_connections TO anon",
        "GRANT SELECT ON mcsync.mailchimp_members TO PUBLIC",
        "GRANT EXECUTE ON PROCEDURE mcsync.lock_down() TO service_role",
        "GRANT mcsync_fresh_web TO authenticated",
        "ALTER TABLE mcsync.mailchimp_contact_links DISABLE ROW LEVEL SECURITY",
    )
    status, checks = doctor(capsys)
    assert status == 1
    detail = only_problem(checks, "exposure")["detail"]
    assert "usable by PUBLIC, anon, authenticated, service_role" in detail
    assert "anon: SELECT on table mcsync.mailchimp_connections; USAGE on schema mcsync" in detail
    assert "PUBLIC: SELECT on table mcsync.mailchimp_members" in detail
    assert "service_role: EXECUTE on procedure mcsync.lock_down()" in detail
    assert "authenticated is a member of mcsync_fresh_web" in detail
    assert "mcsync.mailchimp_contact_links has row level security off" in detail
    # The fix the doctor gives, done (and the membership revoked): all ok again.
    execute(url, "CALL mcsync.lock_down()", "REVOKE mcsync_fresh_web FROM authenticated")
    status, checks = doctor(capsys)
    assert status == 0, problems(checks)


def test_the_schema_in_postgrests_exposed_schemas_is_named(
    doctor_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = doctor_env["DATABASE_URL"]
    dbname = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    # Scoped to this test's database, so other databases of the server never see it.
    execute(
        url,
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticator')"
        " THEN CREATE ROLE authenticator NOINHERIT LOGIN; END IF; END $$",
        f'ALTER ROLE authenticator IN DATABASE "{dbname}" SET pgrst.db_schemas ='
        " 'public, graphql_public'",
    )
    status, checks = doctor(capsys)
    assert status == 0 and "not in pgrst.db_schemas" in checks["postgrest"]["detail"]
    execute(
        url,
        f'ALTER ROLE authenticator IN DATABASE "{dbname}" SET pgrst.db_schemas ='
        " 'public, graphql_public, mcsync'",
    )
    status, checks = doctor(capsys)
    assert status == 1
    detail = only_problem(checks, "postgrest")["detail"]
    assert "schema mcsync is in PostgREST's exposed schemas" in detail
    assert f"role authenticator in database {dbname}" in detail
    execute(url, f"ALTER DATABASE \"{dbname}\" SET pgrst.db_schemas = 'mcsync'")
    _, checks = doctor(capsys)
    assert f"database {dbname}" in checks["postgrest"]["detail"]


def test_a_connection_on_which_notifications_never_arrive_is_named_a_transaction_pooler(
    doctor_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """No transaction-mode pooler runs here: a proxy that passes every message but
    notifications gives the worker's connection the same symptom (tests/support/notify_proxy.py)."""
    with notification_dropping_proxy(doctor_env["DATABASE_URL"]) as through_pooler:
        status, checks = doctor(capsys, "--listen-url", through_pooler, "--listen-wait", "0.5")
    assert status == 1
    listen = only_problem(checks, "listen")
    assert "no notification arrived within 0.5 s" in listen["detail"]
    assert "transaction-mode pooler" in listen["detail"]
    assert "session-mode pooler" in listen["fix"]


def test_tokens_the_keys_cannot_use_are_counted_by_kind_never_shown(
    connected: SyncHarness, capsys: pytest.CaptureFixture[str]
) -> None:
    url = connected.db_url
    lost_key = Fernet.generate_key().decode()
    from mcsync.crypto import TokenCipher

    orphaned = connected.add_user(connect=False)
    copied = connected.add_user(connect=False)
    unbound = connected.add_user(connect=False)
    for user in (orphaned, copied, unbound):
        connected.connect(user)
    with psycopg.connect(url, autocommit=True) as conn:
        set_token = (
            "UPDATE mcsync.mailchimp_connections SET access_token_encrypted = %s WHERE user_id = %s"
        )
        # Encrypted with a key since dropped from MCSYNC_ENCRYPTION_KEYS.
        conn.execute(
            set_token,
            (TokenCipher([lost_key]).encrypt(orphaned.token, orphaned.user_id), orphaned.user_id),
        )
        # Another user's ciphertext copied into this row.
        conn.execute(
            set_token, (connected.cipher.encrypt(orphaned.token, orphaned.user_id), copied.user_id)
        )
        # The old, unbound form.
        conn.execute(
            set_token,
            (
                Fernet(ENCRYPTION_KEY.encode()).encrypt(unbound.token.encode()).decode(),
                unbound.user_id,
            ),
        )
    status, checks = doctor(capsys)
    assert status == 1
    detail = only_problem(checks, "tokens")["detail"]
    assert detail.startswith("1 of 4 token(s) decrypt")
    assert "1 not decryptable with any configured key" in detail
    assert "1 bound to another user" in detail
    assert "1 in the old unbound form" in detail
    out = json.dumps(checks)
    for user in (orphaned, copied, unbound):
        assert user.token not in out and str(user.user_id) not in out


def test_an_older_key_still_in_the_list_is_ok_with_a_reminder(
    connected: SyncHarness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(
        "MCSYNC_ENCRYPTION_KEYS", f"{Fernet.generate_key().decode()},{ENCRYPTION_KEY}"
    )
    status, checks = doctor(capsys)
    assert status == 0
    assert "1 by an older key" in checks["tokens"]["detail"]
    assert "rotate-keys" in checks["tokens"]["detail"]


@pytest.mark.parametrize(
    ("body", "status", "named"),
    [
        (b'{"keys": []}', 200, "no usable key"),
        (b"<html>not found</html>", 404, "HTTP 404"),
        (b"not json", 200, "not JSON"),
    ],
)
def test_a_jwks_that_is_not_usable_is_named(
    doctor_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    body: bytes,
    status: int,
    named: str,
) -> None:
    with served(body, status) as url:
        exit_status, checks = doctor(capsys, "--jwks-url", url)
    assert exit_status == 1
    assert named in only_problem(checks, "jwt")["detail"]


def test_a_jwks_that_cannot_be_reached_is_named(
    doctor_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    with served(b"{}") as url:
        pass  # the server is gone: nothing listens on that port any more
    status, checks = doctor(capsys, "--jwks-url", url)
    assert status == 1
    assert "unreachable" in only_problem(checks, "jwt")["detail"]


def test_ping_names_a_connection_whose_token_mailchimp_revoked(
    connected: SyncHarness, capsys: pytest.CaptureFixture[str]
) -> None:
    revoked = connected.add_user()
    connected.admin.revoke(revoked.token)
    status, checks = doctor(capsys, "--ping")
    assert status == 1
    assert (
        "1 of 2 connection(s) reach their Mailchimp account; 1 revoked"
        in only_problem(checks, "mailchimp")["detail"]
    )


def test_a_mapping_other_than_the_installed_one_is_named(
    doctor_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "mcsync.toml"
    config.write_text('[source]\nfilter = "email IS NOT NULL"\n')
    monkeypatch.setenv("MCSYNC_CONFIG", str(config))
    status, checks = doctor(capsys)
    assert status == 1
    assert "differs from the one installed" in only_problem(checks, "mapping")["detail"]
    # Installed as the processes have it: ok. Then a trigger dropped by hand: named.
    main(["migrate"])
    status, checks = doctor(capsys)
    assert status == 0, problems(checks)
    execute(doctor_env["DATABASE_URL"], "DROP TRIGGER mcsync_contacts_deleted ON public.contacts")
    status, checks = doctor(capsys)
    detail = only_problem(checks, "mapping")["detail"]
    assert "trigger mcsync_contacts_deleted missing" in detail


def test_no_install_at_all_is_named_and_the_rest_still_runs(
    pg_admin_url: str,
    doctor_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = _new_database(pg_admin_url, None)
    try:
        monkeypatch.setenv("DATABASE_URL", database_url(pg_admin_url, name))
        status, checks = doctor(capsys)
    finally:
        _drop_database(pg_admin_url, name)
    assert status == 1
    assert "not installed" in only_problem(checks, "migrations")["detail"]
    assert checks["listen"]["status"] == "ok" and checks["jwt"]["status"] == "ok"


def test_a_database_it_cannot_reach_is_named_and_the_rest_still_runs(
    doctor_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with served(b"{}") as gone:
        port = gone.split(":")[2].split("/")[0]  # a port nothing listens on once it stops
    monkeypatch.setenv(
        "DATABASE_URL", f"postgresql://nobody@127.0.0.1:{port}/app?connect_timeout=3"
    )
    status, checks = doctor(capsys)
    assert status == 1
    assert "cannot connect" in only_problem(checks, "database")["detail"]
    assert checks["listen"]["status"] == "skipped" and checks["jwt"]["status"] == "ok"
