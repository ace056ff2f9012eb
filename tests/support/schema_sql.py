"""`sql/schema.sql`: mcsync's schema as the migrations leave it, in one readable file.

Regenerate it after adding a migration (tests/e2e/test_schema_sql.py fails until you do):

    make schema-sql            # = .venv/bin/python -m tests.support.schema_sql

This starts the embedded PostgreSQL (pgserver), builds a fresh database with the app's example
contacts table and every migration file applied (`mcsync.migrate.migrations_script`, without
the source mapping), dumps the `mcsync` schema with that server's own `pg_dump`
(`--schema-only --no-owner`, privileges kept) and drops the dump's session settings and
comments. The database and the server are thrown away.

Shared with the test: `build_from_migrations` and `CONTACTS_DDL`.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from mcsync.embedded import database_url, start_embedded_postgres
from mcsync.migrate import SQL_DIR, load_migrations, migrations_script

SCHEMA_SQL = SQL_DIR / "schema.sql"
CONTACTS_DDL = (SQL_DIR / "example_contacts.sql").read_text()

HEADER = """\
-- mcsync's schema as migrations {first}-{last} leave it: every table, index, constraint,
-- function and privilege of the `mcsync` schema, in one file to read.
--
-- GENERATED: do not edit. After adding a migration, run `make schema-sql`
-- (tests/support/schema_sql.py); tests/e2e/test_schema_sql.py checks that a database built from
-- this file has the same catalog as one built by the migrations.
--
-- For reading, not for installing: installs run the migrations (`mcsync migrate`, or
-- `mcsync sql` for a migration tool of the app's own). Not here: the runner's bookkeeping
-- table (mcsync_schema_migrations), and what the source mapping generates in the same
-- transaction (docs/mapping.md): the view mcsync.source_contacts, the index and triggers on the
-- app's table, and the real bodies of the mcsync_enqueue_* trigger functions (declared here
-- with empty ones). The grants for mcsync's own roles are sql/grants.sql.
"""

# What pg_dump writes around the DDL: session settings, its comments, psql meta-commands.
_NOISE = re.compile(r"^(SET |SELECT pg_catalog\.set_config|--|\\)")


def build_from_migrations(url: str) -> None:
    """The app's example contacts table and every migration file, on the empty database at
    `url` (no source mapping: what it generates is not part of mcsync's own schema)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(CONTACTS_DDL.encode())
        conn.execute(migrations_script("mcsync", mapping=None).encode())


def tidy(dump: str) -> str:
    """pg_dump's output without its settings and comments, one blank line between statements."""
    lines = [line for line in dump.splitlines() if not _NOISE.match(line)]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return text + "\n"


def _pg_dump() -> str:
    """The embedded server's own pg_dump (the same version as the server it dumps)."""
    import pgserver  # type: ignore[import-untyped]

    return str(Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_dump")


@contextmanager
def _scratch_database() -> Iterator[str]:
    server = start_embedded_postgres()
    name = f"mcsync_schema_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        yield database_url(server.url, name)
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        server.stop()


def generate() -> str:
    """The text of sql/schema.sql for the migration files as they are now."""
    migrations = load_migrations()
    header = HEADER.format(first=migrations[0].version, last=migrations[-1].version)
    with _scratch_database() as url:
        build_from_migrations(url)
        dump = subprocess.run(
            [_pg_dump(), "--schema-only", "--no-owner", "--schema=mcsync", "--dbname", url],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    return header + "\n" + tidy(dump)


def main() -> int:
    text = generate()
    changed = not SCHEMA_SQL.exists() or SCHEMA_SQL.read_text() != text
    SCHEMA_SQL.write_text(text)
    print(f"sql/schema.sql: {'rewritten' if changed else 'unchanged'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
