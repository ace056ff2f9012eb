"""Issue 17: every statement the worker and the web side run names its catalog functions
`pg_catalog.`-qualified, so an exact-signature overload a role created in `public` never runs
in their place. Checked against the real catalog's function names, so a statement added later
that calls a function missing from mcsync.schema.CATALOG_FUNCTIONS fails here. The statements
checked are the ones the stores run: `mcsync.queries.Statements`, rendered for a schema."""

from __future__ import annotations

import re

import psycopg

from mcsync import queries
from mcsync.queries import Statements, statements

# SQL syntax that looks like a call but is not a function looked up in the search_path.
_SYNTAX = {
    "coalesce", "greatest", "least", "nullif", "extract", "exists", "any", "all", "array",
    "row", "values", "in", "cast", "position", "substring", "overlay", "trim", "filter",
    "over", "rows", "using", "as", "on", "and", "or", "not", "count_rows",
}  # fmt: skip
_CALL = re.compile(r"(?<![.\w\"%])([a-z_][a-z0-9_]*)\s*\(", re.I)


def _statements() -> dict[str, str]:
    """Every statement as a store runs it, for the default schema and for another one."""
    return {
        f"{rendered.schema}.{name}": text
        for rendered in (statements(), Statements("mirror_sync"))
        for name, text in rendered.named.items()
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
    assert "pg_catalog.pg_notify(" in statements().NOTIFY
    # Every statement of every module is among them, rendered ...
    written = {name for module in queries.STATEMENT_MODULES for name in queries.written(module)}
    assert written == set(statements().named) and len(written) > 80
    assert "mirror_sync.mailchimp_connections" in Statements("mirror_sync").GET_CONNECTION
    # ... and rendering rewrote no module's globals: the text as written is still there.
    assert queries.connections.NOTIFY == "SELECT pg_notify('mcsync', '')"
