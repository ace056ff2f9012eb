"""The migration runner and mcsync's own schema: fresh installs, the upgrade of an install made
by 001-003 (tables in `public`), another schema name, and the script for other tools."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.fernet import Fernet

from mcsync.crypto import TokenCipher
from mcsync.migrate import (
    SQL_DIR,
    MigrationError,
    apply_migrations,
    load_migrations,
    migrate_and_bind_tokens,
    migrations_script,
)
from mcsync.schema import SchemaNameError, render
from tests.conftest import CONTACTS_DDL, create_process_logins
from tests.support.harness import ENCRYPTION_KEY, SyncHarness, User

MCSYNC = [sys.executable, "-m", "mcsync.cli"]
MCSYNC_TABLES = {
    "source_mapping",
    "mailchimp_connections",
    "mailchimp_sync_queue",
    "mailchimp_sync_bulk",
    "mailchimp_members",
    "mailchimp_contact_links",
    "mailchimp_rejected_contacts",
    "mailchimp_health_events",
    "mcsync_oauth_states",
    "mcsync_reconciliations",
    "mcsync_reconcile_seen",
    "mcsync_schema_migrations",
    # 007 (issue 17): this install's id and process roles, and quarantined connections.
    "install",
    "process_roles",
    "quarantined_connections",
}


def _rows(url: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def _names(url: str, schema: str, catalog: str, prefix: str, only: str = "") -> set[str]:
    """The names of one catalog's objects in `schema`: `prefix` is the catalog's column prefix
    (pg_class: rel, pg_proc: pro), `only` narrows the rows (`AND ...`)."""
    rows = _rows(
        url,
        f"SELECT x.{prefix}name FROM {catalog} x JOIN pg_namespace n ON n.oid = x.{prefix}namespace"
        f" WHERE n.nspname = %s {only}",
        (schema,),
    )
    return {r[0] for r in rows}


def _relations(url: str, schema: str) -> set[str]:
    """Tables, plain and partitioned."""
    return _names(url, schema, "pg_class", "rel", "AND x.relkind IN ('r', 'p')")


def _functions(url: str, schema: str) -> set[str]:
    return _names(url, schema, "pg_proc", "pro")


def _with_contacts(url: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(CONTACTS_DDL.encode())
    return url


def test_migrate_is_idempotent_and_leaves_only_the_triggers_in_the_apps_schema(
    empty_db_url: str,
) -> None:
    url = _with_contacts(empty_db_url)
    first = apply_migrations(url)
    all_files = load_migrations()
    assert first == [m.name for m in all_files]
    assert first[:5] == [
        "001_mcsync_tables.sql",
        "002_contacts_triggers.sql",
        "003_web.sql",
        "004_own_schema.sql",
        "005_source_mapping.sql",
    ]
    assert apply_migrations(url) == []
    versions = _rows(url, "SELECT version FROM mcsync.mcsync_schema_migrations ORDER BY 1")
    assert [r[0] for r in versions] == [m.version for m in all_files]
    assert _relations(url, "mcsync") == MCSYNC_TABLES
    assert _relations(url, "public") == {"contacts"}
    assert not {f for f in _functions(url, "public") if f.startswith("mcsync")}
    assert {"mcsync_email_key", "mcsync_enqueue_inserted", "lock_down"} <= _functions(url, "mcsync")
    triggers = _rows(
        url,
        "SELECT tgname, tgfoid::regproc::text FROM pg_trigger"
        " WHERE tgrelid = 'contacts'::regclass AND NOT tgisinternal ORDER BY 1",
    )
    assert triggers == [
        ("mcsync_contacts_deleted", "mcsync.mcsync_enqueue_deleted"),
        ("mcsync_contacts_inserted", "mcsync.mcsync_enqueue_inserted"),
        ("mcsync_contacts_truncated", "mcsync.mcsync_enqueue_truncated"),
        ("mcsync_contacts_updated", "mcsync.mcsync_enqueue_updated"),
    ]
    # Frozen search_path without the app's schema: a trigger can't be redirected to other tables.
    configs = _rows(
        url,
        "SELECT proconfig FROM pg_proc WHERE pronamespace = 'mcsync'::regnamespace"
        " AND proname LIKE 'mcsync_enqueue_%'",
    )
    assert [c[0] for c in configs] == [["search_path=pg_catalog, pg_temp"]] * 4
    # Row level security on every table, and no policy until grants.sql adds mcsync's own.
    assert (
        _rows(
            url,
            "SELECT relname FROM pg_class WHERE relnamespace = 'mcsync'::regnamespace"
            " AND relkind = 'r' AND NOT relrowsecurity",
        )
        == []
    )


def test_migrate_fails_clearly_without_contacts_and_leaves_nothing_at_all(
    empty_db_url: str,
) -> None:
    with pytest.raises(MigrationError, match=r'"contacts" table was not found.*nothing was'):
        apply_migrations(empty_db_url)
    # All pending migrations run in one transaction: 001 rolled back with 002.
    assert _rows(empty_db_url, "SELECT to_regclass('mcsync_schema_migrations')") == [(None,)]
    assert _rows(empty_db_url, "SELECT to_regclass('mailchimp_connections')") == [(None,)]
    assert _rows(empty_db_url, "SELECT to_regnamespace('mcsync')") == [(None,)]


def test_migrate_refuses_an_edited_migration(empty_db_url: str, tmp_path: Path) -> None:
    url = _with_contacts(empty_db_url)
    for f in SQL_DIR.glob("0*.sql"):
        (tmp_path / f.name).write_text(f.read_text())
    apply_migrations(url, tmp_path)
    edited = tmp_path / "001_mcsync_tables.sql"
    edited.write_text(edited.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError, match="was edited after it was applied"):
        apply_migrations(url, tmp_path)


def _old_install(url: str, tmp_path: Path) -> None:
    """What an install made before 004 looks like: 001-003 applied (tables in `public`), with
    002 as first released (it installed the triggers on `contacts` itself, before the source
    mapping generated them; the runner accepts that text's checksum)."""
    old = tmp_path / "old"
    old.mkdir()
    for f in SQL_DIR.glob("00[13]_*.sql"):
        (old / f.name).write_text(f.read_text())
    first_002 = Path(__file__).parent / "fixtures" / "002_contacts_triggers.v1.sql"
    (old / "002_contacts_triggers.sql").write_text(first_002.read_text())
    assert apply_migrations(url, old) == [
        "001_mcsync_tables.sql",
        "002_contacts_triggers.sql",
        "003_web.sql",
    ]
    assert "mailchimp_connections" in _relations(url, "public")


def test_an_install_made_by_001_003_upgrades_in_place_and_keeps_syncing(
    empty_db_url: str, emulator: Any, tmp_path: Path
) -> None:
    url = _with_contacts(empty_db_url)
    _old_install(url, tmp_path)
    account = emulator.admin.create_account(
        dc="us1", account_name="Old", audiences=[{"id": "old00001", "name": "Old"}]
    )
    user = User(uuid.uuid4(), "old00001", account["access_token"])
    # The connection as the old code stored it: the bare token, not bound to its user.
    legacy = Fernet(ENCRYPTION_KEY.encode()).encrypt(user.token.encode()).decode()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO mailchimp_connections (user_id, access_token_encrypted, dc,"
            " api_endpoint, audience_id) VALUES (%s, %s, 'us1', %s, 'old00001')",
            (user.user_id, legacy, emulator.url),
        )
        for i in range(3):
            conn.execute(
                "INSERT INTO contacts (user_id, email, first_name) VALUES (%s, %s, 'Old')",
                (user.user_id, f"old{i}@clientmail.io"),
            )
        conn.execute("UPDATE contacts SET first_name = 'Older' WHERE email = 'old0@clientmail.io'")
        # A large import written by the old trigger as one bulk row.
        conn.execute(
            "INSERT INTO contacts (user_id, email) SELECT %s, 'bulk' || g || '@clientmail.io'"
            " FROM generate_series(1, 1000) g",
            (user.user_id,),
        )
    pending = _rows(url, "SELECT count(*) FROM mailchimp_sync_queue")[0][0]
    assert pending == 3 and _rows(url, "SELECT count(*) FROM mailchimp_sync_bulk") == [(1,)]

    # Without keys: the schema move lands, and the operator is told the token needs binding.
    applied, unbound = migrate_and_bind_tokens(url, None)
    later = [m for m in load_migrations() if m.version >= "004"]
    assert applied == [m.name for m in later] and unbound == 1
    assert _relations(url, "public") == {"contacts"}
    # The old tables were exposed (issue 17): their pending work is not trusted but rebuilt by
    # a full sync of every connection, the import's contacts included.
    assert _rows(url, "SELECT count(*) FROM mcsync.mailchimp_sync_queue") == [(1003,)]
    assert _rows(url, "SELECT count(*) FROM mcsync.mailchimp_sync_bulk") == [(0,)]
    versions = _rows(url, "SELECT version FROM mcsync.mcsync_schema_migrations ORDER BY 1")
    assert [v[0] for v in versions] == ["001", "002", "003"] + [m.version for m in later]
    # With keys: the same command binds it, and then has nothing left to say.
    assert migrate_and_bind_tokens(url, TokenCipher([ENCRYPTION_KEY])) == ([], 0)
    [(stored,)] = _rows(url, "SELECT access_token_encrypted FROM mcsync.mailchimp_connections")
    assert TokenCipher([ENCRYPTION_KEY]).decrypt(stored, user.user_id) == user.token

    create_process_logins(url)
    sync = SyncHarness(url, emulator)
    sync.drain()
    members = sync.members(user)
    assert len(members) == 1003
    assert members["old0@clientmail.io"]["merge_fields"]["FNAME"] == "Older"
    # The recreated triggers go on queueing into the moved tables.
    sync.update_contact(
        _rows(url, "SELECT id FROM contacts WHERE email = 'old1@clientmail.io'")[0][0],
        email="new1@clientmail.io",
    )
    sync.add_contact(user, "after@clientmail.io")
    sync.delete_contact(
        _rows(url, "SELECT id FROM contacts WHERE email = 'old2@clientmail.io'")[0][0]
    )
    sync.drain()
    members = sync.members(user)
    assert "after@clientmail.io" in members and "new1@clientmail.io" in members
    assert "old1@clientmail.io" not in members  # renamed, as an email change does
    assert members["old2@clientmail.io"]["status"] == "archived"
    assert sync.queue() == []


def test_migrate_from_the_command_line_says_when_tokens_still_need_binding(
    empty_db_url: str, tmp_path: Path
) -> None:
    url = _with_contacts(empty_db_url)
    _old_install(url, tmp_path)
    legacy = Fernet(ENCRYPTION_KEY.encode()).encrypt(b"token").decode()
    _rows(
        url,
        "INSERT INTO mailchimp_connections (user_id, access_token_encrypted, dc, api_endpoint)"
        " VALUES (%s, %s, 'us1', 'https://us1.api.mailchimp.com') RETURNING 1",
        (uuid.uuid4(), legacy),
    )
    env = {k: v for k, v in os.environ.items() if k != "MCSYNC_ENCRYPTION_KEYS"}
    run = subprocess.run(
        [*MCSYNC, "migrate", "--database-url", url], capture_output=True, text=True, env=env
    )
    assert run.returncode == 1 and "applied: 004_own_schema.sql" in run.stdout
    assert "run `mcsync rotate-keys`" in run.stderr
    run = subprocess.run(
        [*MCSYNC, "migrate", "--database-url", url, f"--encryption-keys={ENCRYPTION_KEY}"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    assert "up to date" in run.stdout


def test_another_schema_name_end_to_end_from_the_command_line(
    empty_db_url: str, emulator: Any
) -> None:
    url = _with_contacts(empty_db_url)
    account = emulator.admin.create_account(
        dc="us1", account_name="Own", audiences=[{"id": "own00001", "name": "Own"}]
    )
    user_id = uuid.uuid4()
    env = {
        **os.environ,
        "MCSYNC_SCHEMA": "mirror_sync",
        "DATABASE_URL": url,
        "MCSYNC_ENCRYPTION_KEYS": ENCRYPTION_KEY,
        "MAILCHIMP_API_URL": emulator.api_url,
    }

    def mcsync(*args: str) -> subprocess.CompletedProcess[str]:
        run = subprocess.run([*MCSYNC, *args], capture_output=True, text=True, env=env, timeout=60)
        assert run.returncode == 0, run.stdout + run.stderr
        return run

    mcsync("migrate")
    assert _relations(url, "mirror_sync") == MCSYNC_TABLES
    assert _relations(url, "public") == {"contacts"}
    assert _rows(url, "SELECT to_regnamespace('mcsync')") == [(None,)]
    _rows(
        url,
        "INSERT INTO contacts (user_id, email) VALUES (%s, 'own@clientmail.io') RETURNING 1",
        (user_id,),
    )
    mcsync("connect", "--user-id", str(user_id), "--access-token", account["access_token"],
           "--dc", "us1", "--audience-id", "own00001")  # fmt: skip
    mcsync("worker", "--once")
    members = emulator.admin.members("own00001")
    assert [m["email_address"] for m in members] == ["own@clientmail.io"]
    assert _rows(url, "SELECT count(*) FROM mirror_sync.mailchimp_members") == [(1,)]
    assert "mirror_sync.mailchimp_connections" in mcsync("sql").stdout
    assert "GRANT USAGE ON SCHEMA mirror_sync" in mcsync("sql", "--grants").stdout


def test_the_single_script_for_other_migration_tools_installs_the_same_thing(
    empty_db_url: str,
) -> None:
    url = _with_contacts(empty_db_url)
    with psycopg.connect(url) as conn, conn.transaction():
        conn.execute(migrations_script("mcsync").encode())
    assert _relations(url, "mcsync") == MCSYNC_TABLES - {"mcsync_schema_migrations"}
    assert _relations(url, "public") == {"contacts"}


def test_the_upgrade_script_for_other_tools_moves_an_old_install(
    empty_db_url: str, tmp_path: Path
) -> None:
    url = _with_contacts(empty_db_url)
    _old_install(url, tmp_path)
    script = migrations_script("mcsync", after="003")
    assert "===== 004_own_schema.sql" in script and "001_mcsync_tables" not in script
    with psycopg.connect(url) as conn, conn.transaction():
        conn.execute(script.encode())
    assert _relations(url, "public") == {"contacts"}
    with pytest.raises(MigrationError, match="no migration is numbered after 999"):
        migrations_script(after="999")


def test_render_rewrites_only_mcsyncs_names() -> None:
    sql = (
        "CREATE SCHEMA IF NOT EXISTS mcsync; SELECT mcsync.mcsync_email_key(x), "
        "'mcsync'::regnamespace, pg_notify('mcsync', ''), mcsync_new_rows FROM mcsync.t"
    )
    assert render(sql, "mcsync") == sql
    assert render(sql, "crm_sync") == (
        "CREATE SCHEMA IF NOT EXISTS crm_sync; SELECT crm_sync.mcsync_email_key(x), "
        "'crm_sync'::regnamespace, pg_notify('mcsync', ''), mcsync_new_rows FROM crm_sync.t"
    )
    for bad in ("public", "Mixed", "x; DROP TABLE contacts", "pg_catalog", ""):
        with pytest.raises(SchemaNameError):
            render(sql, bad)


def test_010_narrows_the_ledger_and_links_of_an_install_and_keeps_what_they_knew(
    empty_db_url: str, tmp_path: Path
) -> None:
    """Migration 010 stores hashes as bytes and nothing in doubt as NULL: an install with
    rows written by 001-009 reads, after it, exactly as before (hex hashes, tags and members in
    doubt, renames in doubt), through the statements the worker and the reconciliation run."""
    from psycopg.rows import dict_row

    from mcsync.emails import subscriber_hash
    from mcsync.mirror import LedgerMember
    from mcsync.queries import statements
    from mcsync.rows import ledger_from_row

    url = _with_contacts(empty_db_url)
    before = tmp_path / "before"
    before.mkdir()
    for f in SQL_DIR.glob("00[1-9]_*.sql"):
        (before / f.name).write_text(f.read_text())
    assert apply_migrations(url, before)[-1] == "009_connection_reason.sql"
    user_id, audience = uuid.uuid4(), "list0001"
    ana, bo, cy = (subscriber_hash(f"{n}@example.com") for n in ("ana", "bo", "cy"))
    owned = LedgerMember(
        email_hash=ana,
        email="ana@example.com",
        fields_hash="0123456789abcdef" * 2,
        tags=("vip", "lead"),
        status="subscribed",
        archived=False,
    )
    in_doubt = LedgerMember(
        email_hash=bo,
        email="bo@example.com",
        fields_hash=None,
        tags=(),
        maybe_tags=("new",),
        status=None,
        archived=True,
        archive_status="subscribed",
        pending_rename_from=cy,
    )
    linked, written_ahead, unlinked = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(url, autocommit=True) as conn:
        for m in (owned, in_doubt):
            conn.execute(
                "INSERT INTO mcsync.mailchimp_members (user_id, audience_id, email_hash, email,"
                " fields_hash, tags, maybe_tags, status, archived, archive_status,"
                " pending_rename_from) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (user_id, audience, m.email_hash, m.email, m.fields_hash, list(m.tags),
                 list(m.maybe_tags), m.status, m.archived, m.archive_status,
                 m.pending_rename_from),
            )  # fmt: skip
        conn.execute(
            "INSERT INTO mcsync.mailchimp_contact_links (user_id, contact_id, audience_id,"
            " email_hash, maybe_hashes) VALUES (%s, %s, %s, %s, '{}'), (%s, %s, %s, NULL, %s),"
            " (%s, %s, %s, NULL, '{}')",
            (user_id, linked, audience, ana, user_id, written_ahead, audience, [bo, cy],
             user_id, unlinked, audience),
        )  # fmt: skip

    assert apply_migrations(url) == ["010_narrow_ledger.sql"]
    params = {"user_id": user_id, "audience_id": audience}
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(statements().LEDGER_BY_HASH, {**params, "hashes": sorted([ana, bo])})
        ledger = {r["email_hash"]: ledger_from_row(r) for r in cur.fetchall()}
        cur.execute(statements().AUDIENCE_LEDGER, params)
        audience_ledger = {r["email_hash"]: ledger_from_row(r) for r in cur.fetchall()}
        ids = [linked, written_ahead, unlinked]
        cur.execute(statements().LINKS_BY_CONTACT, {**params, "ids": ids})
        links = {r["contact_id"]: (r["email_hash"], r["maybe_hashes"]) for r in cur.fetchall()}
        stored = cur.execute(
            "SELECT pg_typeof(email_hash)::text AS hash, maybe_tags FROM mcsync.mailchimp_members"
            " WHERE email_hash = decode(%s, 'hex')",
            (ana,),
        ).fetchone()
    assert ledger == audience_ledger == {ana: owned, bo: in_doubt}
    assert links == {linked: (ana, None), written_ahead: (None, [bo, cy]), unlinked: (None, None)}
    assert stored == {"hash": "bytea", "maybe_tags": None}  # '{}' became NULL
