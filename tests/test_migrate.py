from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from mcsync.migrate import SQL_DIR, MigrationError, apply_migrations, load_migrations
from tests.conftest import CONTACTS_DDL


def test_migrate_is_idempotent_and_records_versions(empty_db_url: str) -> None:
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(CONTACTS_DDL.encode())
    first = apply_migrations(empty_db_url)
    all_files = load_migrations()
    assert first == [m.name for m in all_files]
    assert first[:2] == ["001_mcsync_tables.sql", "002_contacts_triggers.sql"]
    assert apply_migrations(empty_db_url) == []
    with psycopg.connect(empty_db_url) as conn:
        rows = conn.execute("SELECT version FROM mcsync_schema_migrations ORDER BY 1").fetchall()
        triggers = conn.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'contacts'::regclass"
            " AND NOT tgisinternal ORDER BY 1"
        ).fetchall()
    assert [r[0] for r in rows] == [m.version for m in all_files]
    assert [t[0] for t in triggers] == [
        "mcsync_contacts_deleted",
        "mcsync_contacts_inserted",
        "mcsync_contacts_updated",
    ]


def test_migrate_fails_clearly_without_contacts_and_leaves_nothing_half_done(
    empty_db_url: str,
) -> None:
    with pytest.raises(MigrationError, match='"contacts" table was not found'):
        apply_migrations(empty_db_url)
    with psycopg.connect(empty_db_url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM mcsync_schema_migrations")]
    # 001 landed in its own transaction; 002 rolled back whole, so a rerun picks up there.
    assert versions == ["001"]


def test_migrate_refuses_an_edited_migration(empty_db_url: str, tmp_path: Path) -> None:
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(CONTACTS_DDL.encode())
    for f in SQL_DIR.glob("0*.sql"):
        (tmp_path / f.name).write_text(f.read_text())
    apply_migrations(empty_db_url, tmp_path)
    edited = tmp_path / "001_mcsync_tables.sql"
    edited.write_text(edited.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError, match="was edited after it was applied"):
        apply_migrations(empty_db_url, tmp_path)
