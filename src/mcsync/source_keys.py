"""What mcsync relies on in the app's table, checked before anything is installed.

The triggers write one queue row per (tenant, id) with `INSERT ... ON CONFLICT DO UPDATE`:

- an id that may be NULL makes the app's own INSERT fail inside mcsync's trigger (`null value
  in column "contact_id"`), an error the app's developer cannot place;
- an id that is not unique makes one statement writing two rows with one id fail (`ON CONFLICT
  DO UPDATE command cannot affect row a second time`), and a contact id naming two people
  would mirror one over the other;
- a tenant that may be NULL is a contact of nobody: its queue row cannot be written.

So `mcsync migrate` (through the mapping check, `mcsync.source.check_against_catalog`) refuses
a table without them, naming the column and the statement that fixes it; nothing is applied."""

from __future__ import annotations

from typing import Any

import psycopg

from mcsync.install_store import key_facts
from mcsync.source import SourceMapping, quote


def key_problems(conn: psycopg.Connection[Any], mapping: SourceMapping) -> list[str]:
    """Each way the source table breaks what mcsync relies on, as `key: problem. Fix: SQL`.
    A column that does not exist is left to the mapping check's own message."""
    problems: list[str] = []
    table, qtable = mapping.table, quote(mapping.table)
    facts = key_facts(conn, table, mapping.id)
    if facts is not None:
        not_null, unique = facts
        column = quote(mapping.id)
        if not unique:
            problems.append(
                f"source.id: column {table}.{mapping.id} is not unique (no primary key or unique"
                " index on it alone); mcsync keeps one queue row per contact id. Fix: "
                f"ALTER TABLE {qtable} ADD PRIMARY KEY ({column});"
            )
        if not not_null:
            problems.append(
                f"source.id: column {table}.{mapping.id} may be NULL; the app's INSERT without an"
                " id would fail inside mcsync's trigger. Fix: ALTER TABLE "
                f"{qtable} ALTER COLUMN {column} SET DEFAULT gen_random_uuid(), "
                f"ALTER COLUMN {column} SET NOT NULL; (a primary key is NOT NULL too)"
            )
    tenant = key_facts(conn, table, mapping.tenant)
    if tenant is not None and not tenant[0]:
        column = quote(mapping.tenant)
        problems.append(
            f"source.tenant: column {table}.{mapping.tenant} may be NULL; a contact must belong"
            f" to a user. Fix: ALTER TABLE {qtable} ALTER COLUMN {column} SET NOT NULL;"
        )
    return problems
