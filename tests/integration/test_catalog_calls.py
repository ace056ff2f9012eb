"""Issue 17: every statement the worker and the web side run names its catalog functions
`pg_catalog.`-qualified, so an exact-signature overload a role created in `public` never runs
in their place. Checked against the real catalog's function names, so a statement added later
that calls a function missing from mcsync.schema.CATALOG_FUNCTIONS fails here."""

from __future__ import annotations

import re

import psycopg

from mcsync import admin_queries, queries

# SQL syntax that looks like a call but is not a function looked up in the search_path.
_SYNTAX = {
    "coalesce", "greatest", "least", "nullif", "extract", "exists", "any", "all", "array",
    "row", "values", "in", "cast", "position", "substring", "overlay", "trim", "filter",
    "over", "rows", "using", "as", "on", "and", "or", "not", "count_rows",
}  # fmt: skip
_CALL = re.compile(r"(?<![.\w\"%])([a-z_][a-z0-9_]*)\s*\(", re.I)


def _statements() -> dict[str, str]:
    return {
        f"{module.__name__}.{name}": text
        for module in (queries, admin_queries)
        for name, text in vars(module).items()
        if name.isupper() and isinstance(text, str) and name not in ("SCHEMA", "CHANNEL")
    }


def test_no_statement_calls_a_catalog_function_unqualified(pg_admin_url: str) -> None:
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        catalog = {
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT proname FROM pg_proc"
                " WHERE pronamespace = 'pg_catalog'::regnamespace"
            ).fetchall()
        }
    unqualified = {
        (name, called)
        for name, text in _statements().items()
        for called in _CALL.findall(text)
        if called.lower() in catalog and called.lower() not in _SYNTAX
    }
    assert unqualified == set()
    # And the check sees what it should: the rendering did qualify calls.
    assert "pg_catalog.now()" in queries.NOTIFY or "pg_catalog.pg_notify(" in queries.NOTIFY
