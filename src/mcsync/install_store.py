"""The Postgres side of installing: the migration runner's bookkeeping (`mcsync migrate`), the
source mapping's record, and the catalog reads that check a mapping against the app's table.

Thin: every statement is a named one of `mcsync.queries.install`, rendered for the install's
schema; the migration files and the generated view and triggers (mcsync.source_sql) are the
only other SQL the installer runs. Everything runs in the caller's transaction. The `*_script`
functions give the upgrade's moves as text, for `mcsync sql` (mcsync.upgrade chooses which)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from mcsync.queries import statements
from mcsync.schema import DEFAULT_SCHEMA

# Any constant works; it only has to be the same for every mcsync process.
ADVISORY_LOCK_KEY = 0x6D6373796E63

Conn = psycopg.Connection[Any]


def lock_migrations(conn: Conn, schema: str) -> None:
    """Wait for any other runner: one applies the migrations at a time (until commit)."""
    conn.execute(statements(schema).LOCK_MIGRATIONS, {"key": ADVISORY_LOCK_KEY})


def table_named(conn: Conn, name: str, schema: str) -> bool:
    """Whether a table `name` (as written, qualified or resolved by the search_path) exists."""
    found = conn.execute(statements(schema).REGCLASS, {"name": name}).fetchone()
    return found is not None and found[0] is not None


def applied_migrations(conn: Conn, table: str, schema: str) -> dict[str, tuple[str, str]]:
    """version -> (file name, checksum) of every migration recorded in `table`."""
    query = sql.SQL(statements(schema).APPLIED_MIGRATIONS).format(table=_name(table))
    return {row[0]: (row[1], row[2]) for row in conn.execute(query).fetchall()}


def create_bookkeeping(conn: Conn, schema: str) -> None:
    """The bookkeeping table of a fresh database (created where the search_path points)."""
    conn.execute(statements(schema).CREATE_BOOKKEEPING)


def record_migration(
    conn: Conn, table: str, schema: str, *, version: str, name: str, checksum: str
) -> None:
    """Note one migration as applied in `table`."""
    query = sql.SQL(statements(schema).RECORD_MIGRATION).format(table=_name(table))
    conn.execute(query, {"version": version, "name": name, "checksum": checksum})


def installed_mapping_fingerprint(conn: Conn, schema: str) -> str | None:
    """The fingerprint of the source mapping installed before, if any."""
    row = conn.execute(statements(schema).SOURCE_MAPPING_FINGERPRINT).fetchone()
    return None if row is None else str(row[0])


def source_mapping_record(mapping_json: str, fingerprint: str, schema: str) -> sql.Composed:
    """The one statement that records a source mapping: run by `record_source_mapping`,
    printed by `mcsync sql` (its values are literals, so it reads the same in both)."""
    return sql.SQL(statements(schema).RECORD_SOURCE_MAPPING).format(
        mapping=sql.Literal(mapping_json), fingerprint=sql.Literal(fingerprint)
    )


def record_source_mapping(conn: Conn, mapping_json: str, fingerprint: str, schema: str) -> None:
    """Record the source mapping installed now (one row, replaced)."""
    conn.execute(source_mapping_record(mapping_json, fingerprint, schema))


# The catalog reads name no object of mcsync's: any schema's rendering of them is the same.
_CATALOG = DEFAULT_SCHEMA


def table_columns(conn: Conn, table: str) -> list[tuple[str, str, str, str | None]] | None:
    """Each column of the app's `table` (`schema.name`): name, type, category, an array's
    element category; [] for a table without columns, None when there is no such table."""
    schema, name = table.split(".")
    params = {"schema": schema, "name": name}
    rows = conn.execute(statements(_CATALOG).TABLE_COLUMNS, params).fetchall()
    if rows:
        return [(r[0], r[1], r[2], r[3]) for r in rows]
    exists = conn.execute(statements(_CATALOG).TABLE_EXISTS, params).fetchone()
    return [] if exists else None


def leads_an_index(conn: Conn, table: str, column: str) -> bool:
    """Whether an index of the app's `table` starts with `column`."""
    schema, name = table.split(".")
    params = {"schema": schema, "name": name, "column": column}
    return conn.execute(statements(_CATALOG).LEADS_AN_INDEX, params).fetchone() is not None


def key_facts(conn: Conn, table: str, column: str) -> tuple[bool, bool] | None:
    """Whether the app's `table`.`column` is NOT NULL, and whether it is unique by itself;
    None when there is no such column."""
    schema, name = table.split(".")
    params = {"schema": schema, "name": name, "column": column}
    row = conn.execute(statements(_CATALOG).KEY_FACTS, params).fetchone()
    return (bool(row[0]), bool(row[1])) if row else None


def filter_type(conn: Conn, expression: str, table: str) -> int | None:
    """The type oid of the mapping's filter `expression` over the app's `table`, evaluated with
    the triggers' search_path (set in a savepoint that is rolled back); raises psycopg.Error
    when it is no valid expression there."""
    q = statements(_CATALOG)
    try:
        with conn.transaction():
            conn.execute(q.PIN_SEARCH_PATH)
            cur = conn.execute(
                sql.SQL(q.FILTER_TYPE).format(filter=sql.SQL(expression), table=_name(table)),
                prepare=False,
            )
            kind = cur.description[0].type_code if cur.description else None
            raise _Rollback(kind)
    except _Rollback as done:
        return done.kind


class _Rollback(Exception):
    """Leaves the check's savepoint without keeping its SET LOCAL."""

    def __init__(self, kind: int | None) -> None:
        self.kind = kind


def _name(table: str) -> sql.Identifier:
    return sql.Identifier(*table.split("."))


# --- the upgrade's moves (which of them run is mcsync.upgrade's plan) -------------------------


def schema_owner(conn: Conn, schema: str) -> tuple[str, bool] | None:
    """The owner of the schema named `schema`, and whether it is the installing role; None
    when there is no such schema."""
    row = conn.execute(statements(_CATALOG).SCHEMA_OWNER, {"schema": schema}).fetchone()
    return None if row is None else (str(row[0]), bool(row[1]))


def pin_search_path(conn: Conn) -> None:
    """Unqualified names resolve in the catalog only, for the rest of the transaction."""
    conn.execute(statements(_CATALOG).PIN_SEARCH_PATH)


def stage_in(conn: Conn, staging: str) -> None:
    """A fresh install: create the staging schema and resolve unqualified names there first."""
    name = sql.Identifier(staging)
    conn.execute(sql.SQL(statements(_CATALOG).CREATE_STAGING).format(staging=name))
    conn.execute(sql.SQL(statements(_CATALOG).STAGING_SEARCH_PATH).format(staging=name))


def drop_staging(conn: Conn, staging: str) -> None:
    conn.execute(sql.SQL(statements(_CATALOG).DROP_STAGING).format(staging=sql.Identifier(staging)))


def resolve_in_legacy_schema(conn: Conn, legacy_table: str) -> None:
    """An old install: unqualified names resolve (after the catalog) in the schema its
    `legacy_table` lives in (`public` when it cannot be found)."""
    q = statements(_CATALOG)
    row = conn.execute(q.LEGACY_SCHEMA, {"table": legacy_table}).fetchone()
    legacy = sql.Identifier(row[0] if row else "public")
    conn.execute(sql.SQL(q.LEGACY_SEARCH_PATH).format(legacy=legacy))


def _quarantine(dc_form: str) -> list[sql.Composed]:
    q = statements(_CATALOG)
    form = sql.Literal(dc_form)
    return [
        sql.SQL(q.QUARANTINE_CONNECTIONS).format(dc_form=form),
        sql.SQL(q.DROP_QUARANTINED_CONNECTIONS).format(dc_form=form),
    ]


def quarantine_connections(conn: Conn, dc_form: str) -> None:
    """Set aside an old install's connections whose dc does not match `dc_form`."""
    held = conn.execute(statements(_CATALOG).HAS_LEGACY_CONNECTIONS).fetchone()
    if held and held[0]:
        for statement in _quarantine(dc_form):
            conn.execute(statement)


def distrust_exposed_rows(conn: Conn, schema: str) -> None:
    """After 004 over an exposed install: keep what was quarantined, distrust the rest."""
    q = statements(schema)
    held = conn.execute(q.HAS_QUARANTINE).fetchone()
    if held and held[0]:
        conn.execute(q.KEEP_QUARANTINED_CONNECTIONS)
    conn.execute(q.DISTRUST_EXPOSED_ROWS)


def lock_down(conn: Conn, schema: str) -> None:
    """Revoke from PUBLIC and strangers what a generation just created (sql/004)."""
    conn.execute(statements(schema).LOCK_DOWN)


# --- the same moves as script text, for `mcsync sql` (mcsync.upgrade says which) -------------


def _script(*parts: str | sql.Composable) -> str:
    """Statements as a script's lines, each ended by `;`."""
    texts = (p if isinstance(p, str) else p.as_string(None) for p in parts)
    return "".join(t.strip() + ";\n" for t in texts)


def pinned_path_script() -> str:
    """`pin_search_path`, as text."""
    return _script(statements(_CATALOG).PIN_SEARCH_PATH)


def staging_script(staging: str) -> tuple[str, str]:
    """`stage_in` and `drop_staging`, as text: the script's opening and its closing."""
    q = statements(_CATALOG)
    name = sql.Identifier(staging)
    opening = _script(
        sql.SQL(q.CREATE_STAGING).format(staging=name),
        sql.SQL(q.STAGING_SEARCH_PATH).format(staging=name),
    )
    return opening, _script(sql.SQL(q.DROP_STAGING).format(staging=name))


def legacy_path_script(dc_form: str) -> str:
    """`resolve_in_legacy_schema` and `quarantine_connections`, as text."""
    return _script(statements(_CATALOG).LEGACY_SEARCH_PATH_FOUND, *_quarantine(dc_form))


def distrust_exposed_rows_script(schema: str) -> str:
    """`distrust_exposed_rows`, as text (the script's quarantine always exists)."""
    q = statements(schema)
    return _script(q.KEEP_QUARANTINED_CONNECTIONS, q.DISTRUST_EXPOSED_ROWS)


def full_sync_script(schema: str) -> str:
    """Every connection's contacts queued, as text."""
    return _script(statements(schema).QUEUE_EVERY_CONNECTED_CONTACT)


def lock_down_script(schema: str) -> str:
    """`lock_down`, as text."""
    return _script(statements(schema).LOCK_DOWN)
