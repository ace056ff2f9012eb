"""The roles an install's processes use: `<prefix>_worker` and `<prefix>_web`.

Roles are cluster-wide. Two installs of mcsync in the same PostgreSQL cluster (two databases)
must not share them: CONNECT is granted to PUBLIC by default, so a login of one install could
connect to the other's database and read its contacts, tokens and queue. The prefix is
`mcsync` unless MCSYNC_ROLE_PREFIX says otherwise; sql/grants.sql claims its roles for one
install and refuses roles another install holds (docs/install.md)."""

from __future__ import annotations

import os
import re

from mcsync.schema import configured_schema, render

DEFAULT_ROLE_PREFIX = "mcsync"
ROLE_PREFIX_ENV = "MCSYNC_ROLE_PREFIX"
# Written into SQL unquoted (and suffixed with `_worker`), so only a plain lower-case name.
_VALID_PREFIX = re.compile(r"^[a-z_][a-z0-9_]{0,50}$")
_ROLE = re.compile(r"\bmcsync_(worker|web)\b")


class RolePrefixError(ValueError):
    """MCSYNC_ROLE_PREFIX is not a name mcsync can use."""


def checked_prefix(prefix: str) -> str:
    if not _VALID_PREFIX.match(prefix) or prefix.startswith("pg_"):
        raise RolePrefixError(
            f"{ROLE_PREFIX_ENV}={prefix!r} is not a plain lower-case identifier "
            "([a-z_][a-z0-9_]*, at most 51 characters, not pg_...)"
        )
    return prefix


def configured_prefix() -> str:
    """This install's role prefix: MCSYNC_ROLE_PREFIX, else `mcsync`."""
    return checked_prefix(os.environ.get(ROLE_PREFIX_ENV, "").strip() or DEFAULT_ROLE_PREFIX)


def role_names(prefix: str) -> tuple[str, str]:
    """(worker role, web role) for `prefix`."""
    checked_prefix(prefix)
    return f"{prefix}_worker", f"{prefix}_web"


def render_roles(sql: str, prefix: str) -> str:
    """SQL written with `mcsync_worker`/`mcsync_web`, for the roles of `prefix`."""
    checked_prefix(prefix)
    return _ROLE.sub(lambda m: f"{prefix}_{m.group(1)}", sql)


def grants_script(schema: str | None = None, prefix: str | None = None) -> str:
    """sql/grants.sql rendered for `schema` and the roles of `prefix` (default: configured)."""
    from mcsync.migrate import SQL_DIR

    text = (SQL_DIR / "grants.sql").read_text()
    return render_roles(render(text, schema or configured_schema()), prefix or configured_prefix())
