"""sql/grants.sql piped into plain psql (no `-v ON_ERROR_STOP=1`, as README's install step said
until it was fixed) for a second install that names the first install's roles.

psql reports the refusal and carries on with every statement after it. Found following the
docs: that run wrote the second database's claim on the first install's roles (the first could
no longer apply its own grants.sql: "role mcsync_worker belongs to the mcsync install in
database <second>") and granted those roles the second install's tables, so the first install's
logins could read the second's contacts and tokens. Now the claim is written with the check,
and a last block takes back what a refused run granted."""

from __future__ import annotations

import re
import uuid
from typing import Any

import psycopg

from mcsync.embedded import database_url
from mcsync.migrate import apply_migrations
from mcsync.roles import grants_script
from tests.conftest import CONTACTS_DDL
from tests.support.roles import install_roles, login_url


def _admin(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True)


def _fresh_install(admin_url: str, name: str) -> str:
    with _admin(admin_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = database_url(admin_url, name)
    with _admin(url) as conn:
        conn.execute(CONTACTS_DDL.encode())
    apply_migrations(url)
    return url


def _statements(script: str) -> list[str]:
    """The script's statements, as psql sends them: split at a `;` that ends a line outside a
    dollar-quoted body."""
    out, current, quoted = [], [], False
    for line in script.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("--")):
            continue
        current.append(line)
        quoted ^= len(re.findall(r"\$\$", line)) % 2 == 1
        if not quoted and line.rstrip().endswith(";"):
            out.append("\n".join(current))
            current = []
    assert not current, current
    return out


def _like_plain_psql(url: str, script: str) -> list[str]:
    """Every statement run, an error reported and the next one run anyway; the errors and
    warnings."""
    errors: list[str] = []
    with _admin(url) as conn:
        conn.add_notice_handler(
            lambda d: errors.append(d.message_primary or "")
            if d.severity_nonlocalized == "WARNING"
            else None
        )
        for statement in _statements(script):
            try:
                conn.execute(statement.encode())
            except psycopg.Error as exc:
                errors.append(str(exc))
    return errors


def test_a_refused_run_without_on_error_stop_grants_nothing_and_takes_no_claim(
    pg_admin_url: str,
) -> None:
    names = [f"mcsync_t_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    prefix = f"mcsync_pr{uuid.uuid4().hex[:6]}"  # roles are the cluster's: this test's own
    worker, web = f"{prefix}_worker", f"{prefix}_web"
    try:
        one, two = (_fresh_install(pg_admin_url, n) for n in names)
        install_roles(one, prefix)
        errors = _like_plain_psql(two, grants_script(prefix=prefix))
        assert f"belongs to the mcsync install in database {names[0]}" in errors[0]
        assert "grants.sql was refused" in errors[-1]

        # The first install's roles hold nothing in the second database, and its logins read
        # nothing there.
        with _admin(two) as conn:
            held = conn.execute(
                "SELECT count(*) FROM pg_catalog.pg_shdepend s"
                " JOIN pg_catalog.pg_roles r ON r.oid = s.refobjid"
                " WHERE s.dbid = (SELECT oid FROM pg_catalog.pg_database"
                "                  WHERE datname = current_database())"
                "   AND r.rolname IN (%s, %s)",
                (worker, web),
            ).fetchone()
        assert held == (0,)
        with psycopg.connect(login_url(two, f"{worker}_test"), autocommit=True) as conn:
            for table in ("source_contacts", "mailchimp_connections"):
                try:
                    conn.execute(f"SELECT * FROM mcsync.{table}")
                except psycopg.errors.InsufficientPrivilege:
                    continue
                raise AssertionError(f"the first install's login read the second's {table}")

        # The roles are still the first install's: it applies its grants.sql again, and its
        # login reads its own contacts.
        install_roles(one, prefix)
        with psycopg.connect(login_url(one, f"{worker}_test"), autocommit=True) as conn:
            conn.execute("SELECT count(*) FROM mcsync.source_contacts")
    finally:
        with _admin(pg_admin_url) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            for role in (f"{worker}_test", f"{web}_test", worker, web):
                conn.execute(f'DROP ROLE IF EXISTS "{role}"')
