"""The one place the tests learn which roles an install's processes use, and log in as them.

Roles are per install (src/mcsync/roles.py, docs/install.md): sql/grants.sql claims
`<prefix>_worker` and `<prefix>_web` for one install and refuses roles another install of the
cluster holds. So each migrated template database gets a prefix of its own (its clones are the
same install and share it), a database made from nothing in a test takes FRESH_PREFIX (the
database that claimed it before is dropped by then), and every login the tests use is
`<role>_test`, a member of exactly that role. Callers ask a database for its logins
(`worker_url`, `web_url`); nothing else names a role."""

from __future__ import annotations

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from mcsync.roles import grants_script

LOGIN_PASSWORD = "mcsync-test-login"
DEFAULT_PREFIX = "mcsync"  # the example `contacts` template: the docs' plain install
FRESH_PREFIX = "mcsync_fresh"  # a database a test makes and migrates itself


def template_prefix(app_name: str) -> str:
    """The prefix of an app schema's template (tests/support/app_schemas.py)."""
    return DEFAULT_PREFIX if app_name == "contacts" else f"mcsync_{app_name}"


def install_roles(url: str, prefix: str = FRESH_PREFIX) -> None:
    """sql/grants.sql for `prefix`'s roles applied to the database at `url`, and a test login
    made a member of each role (idempotent)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(grants_script(prefix=prefix).encode())
        for role in roles_of(conn):
            login = f"{role}_test"
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login,)).fetchone():
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
                        sql.Identifier(login), sql.Literal(LOGIN_PASSWORD), sql.Identifier(role)
                    )
                )


def regrant(url: str) -> None:
    """sql/grants.sql applied again for the roles the database at `url` already uses."""
    with psycopg.connect(url, autocommit=True) as conn:
        worker, _ = roles_of(conn)
    install_roles(url, prefix=worker.removesuffix("_worker"))


def roles_of(conn: psycopg.Connection) -> tuple[str, str]:  # type: ignore[type-arg]
    """(worker role, web role) of the install at `conn` (as grants.sql recorded them)."""
    rows = dict(conn.execute("SELECT process, role_name FROM mcsync.process_roles").fetchall())
    return rows["worker"], rows["web"]


def login_url(url: str, login: str) -> str:
    """The same database, connected to as `login`."""
    params = conninfo_to_dict(url)
    params.update(user=login, password=LOGIN_PASSWORD)
    return make_conninfo("", **{k: v for k, v in params.items() if v is not None})


def _process_url(url: str, process: int) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        role = roles_of(conn)[process]
    return login_url(url, f"{role}_test")


def worker_url(url: str) -> str:
    """The database at `url`, as the test login of its worker role."""
    return _process_url(url, 0)


def web_url(url: str) -> str:
    """The database at `url`, as the test login of its web role."""
    return _process_url(url, 1)
