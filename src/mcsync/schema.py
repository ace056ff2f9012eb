"""Where mcsync's objects live: a schema of its own, `mcsync` unless MCSYNC_SCHEMA says otherwise.

Every statement names mcsync's objects schema-qualified (`mcsync.mailchimp_connections`), never
through `search_path`: a transaction-mode pooler (Supabase's, PgBouncer's) hands each
transaction a different server session, so a session's `SET search_path` would not follow.

SQL is written for the default schema and rendered for another by `render`, the one place that
knows the rule. It rewrites exactly three forms, so SQL that must survive rendering uses them:

- `mcsync.<name>`          a qualified object name;
- `SCHEMA mcsync`          as in CREATE SCHEMA [IF NOT EXISTS], SET SCHEMA, ON/IN SCHEMA;
- `'mcsync'::regnamespace` the schema as a value (catalog queries), `pg_catalog.`-qualified or not.

The NOTIFY channel `'mcsync'` and names that merely start with `mcsync_` are left alone.
"""

from __future__ import annotations

import os
import re

DEFAULT_SCHEMA = "mcsync"
SCHEMA_ENV = "MCSYNC_SCHEMA"

# A plain lower-case identifier: it is written into SQL unquoted, so nothing else is allowed.
_VALID_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# Schemas that are someone else's: mcsync must never spread its objects into them.
_NOT_OURS = {"public", "information_schema", "auth", "storage", "extensions", "graphql"}

_QUALIFIED = re.compile(r"\bmcsync\.(?=[A-Za-z_])")
_SCHEMA_CLAUSE = re.compile(r"\bSCHEMA (IF NOT EXISTS )?mcsync\b")
_AS_VALUE = re.compile(r"'mcsync'::(pg_catalog\.)?regnamespace")


class SchemaNameError(ValueError):
    """MCSYNC_SCHEMA is not a name mcsync can use."""


def checked_schema(name: str) -> str:
    """`name` if it is a usable schema name for mcsync, else a SchemaNameError saying why."""
    if not _VALID_NAME.match(name):
        raise SchemaNameError(
            f"{SCHEMA_ENV}={name!r} is not a plain lower-case identifier ([a-z_][a-z0-9_]*)"
        )
    if name in _NOT_OURS or name.startswith("pg_"):
        raise SchemaNameError(
            f"{SCHEMA_ENV}={name!r} is a schema mcsync does not own; pick a dedicated one"
        )
    return name


def configured_schema() -> str:
    """The schema this process uses: MCSYNC_SCHEMA, else `mcsync`."""
    return checked_schema(os.environ.get(SCHEMA_ENV, "").strip() or DEFAULT_SCHEMA)


def render(sql: str, schema: str) -> str:
    """SQL written for the `mcsync` schema, rewritten for `schema` (see the module docstring)."""
    checked_schema(schema)
    if schema == DEFAULT_SCHEMA:
        return sql
    sql = _QUALIFIED.sub(f"{schema}.", sql)
    sql = _SCHEMA_CLAUSE.sub(lambda m: f"SCHEMA {m.group(1) or ''}{schema}", sql)
    return _AS_VALUE.sub(lambda m: f"'{schema}'::{m.group(1) or ''}regnamespace", sql)


# Catalog functions mcsync's statements call. Written unqualified in src/mcsync/queries/ for
# legibility; `qualify_catalog_calls` names each `pg_catalog.` before a statement is run, so no
# overload a role created in `public` (an exact signature beats the catalog's polymorphic or
# variadic one: `public.unnest(uuid[])`) ever runs in the worker or the web side (issue 17).
# COALESCE, GREATEST, LEAST, EXTRACT, ARRAY(...), EXISTS are syntax, not functions.
CATALOG_FUNCTIONS = frozenset(
    {
        "now", "make_interval", "unnest", "count", "sum", "min", "max", "avg", "array_agg",
        "string_agg", "bool_or", "bool_and", "jsonb_agg", "jsonb_build_object",
        "jsonb_to_recordset", "jsonb_array_elements_text", "jsonb_array_elements", "to_jsonb",
        "ceil", "floor", "round", "abs", "cardinality", "array_length", "array_position",
        "array_remove", "array_cat", "array_append", "pg_notify", "lower", "upper", "btrim",
        "md5", "length", "format", "to_char", "date_trunc", "gen_random_uuid", "random",
        "pg_advisory_xact_lock", "pg_try_advisory_xact_lock", "to_regclass", "clock_timestamp",
    }
)  # fmt: skip
_CALL = re.compile(r"(?<![.\w\"])(" + "|".join(sorted(CATALOG_FUNCTIONS)) + r")\(", re.I)
# unnest(a, b, ...) in FROM is a special form of the unqualified name only; qualified, it is
# ROWS FROM (pg_catalog.unnest(a), pg_catalog.unnest(b), ...), which means the same.
_ARG = r"(?:%\(\w+\)[sbt]|[^()])*"  # a psycopg placeholder's parentheses are not nesting
_MULTI_UNNEST = re.compile(rf"(?<![.\w\"])unnest\(({_ARG},{_ARG})\)", re.I)


def qualify_catalog_calls(sql: str) -> str:
    """`sql` with every call of a CATALOG_FUNCTIONS function written `pg_catalog.<name>(`."""
    sql = _MULTI_UNNEST.sub(
        lambda m: (
            "ROWS FROM ("
            + ", ".join(f"pg_catalog.unnest({a.strip()})" for a in m.group(1).split(","))
            + ")"
        ),
        sql,
    )
    return _CALL.sub(lambda m: f"pg_catalog.{m.group(1)}(", sql)
