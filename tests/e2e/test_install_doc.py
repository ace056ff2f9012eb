"""docs/install.md's plain-Postgres install, followed as written (its SQL run as written, on a
real Postgres, by an owner that is not a superuser): the steps that failed for a newcomer (the
grants without CREATEROLE, with psql exiting 0; three triggers said, four installed; a
`contacts` table mcsync cannot rely on) say what works."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from mcsync.migrate import apply_migrations
from mcsync.roles import render_roles, role_names
from mcsync.schema import render
from mcsync.source import DEFAULT_MAPPING

INSTALL = Path(__file__).resolve().parents[2] / "docs" / "install.md"
GRANTS = (Path(__file__).resolve().parents[2] / "sql" / "grants.sql").read_text()
NUMBERS = {"three": 3, "four": 4, "five": 5}


def _plain_postgres() -> str:
    text = INSTALL.read_text()
    return text[
        text.index("## Installing on plain Postgres") : text.index("## Installing on Supabase")
    ]


def _step(section: str, n: int) -> str:
    return section[section.index(f"\n{n}. ") : section.index(f"\n{n + 1}. ")]


def _blocks(step: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", step, re.S)


def _as(url: str, user: str, password: str = "doc-owner") -> str:
    params = conninfo_to_dict(url)
    params.update(user=user, password=password)
    return make_conninfo("", **{k: v for k, v in params.items() if v is not None})


def test_the_plain_postgres_install_works_as_written(empty_db_url: str) -> None:
    section = _plain_postgres()
    owner = f"doc_owner_{uuid.uuid4().hex[:8]}"
    prefix = f"doc_{uuid.uuid4().hex[:8]}"
    logins = {
        "mcsync_worker_login": f"doc_worker_{uuid.uuid4().hex[:8]}",
        "mcsync_web_login": f"doc_web_{uuid.uuid4().hex[:8]}",
    }
    database = conninfo_to_dict(empty_db_url)["dbname"]
    with psycopg.connect(empty_db_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'doc-owner'").format(sql.Identifier(owner))
        )
        admin.execute(
            sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                sql.Identifier(database), sql.Identifier(owner)
            )
        )
    owner_url = _as(empty_db_url, owner)
    try:
        # 1. The app's table, as the guide writes it.
        (create_table,) = _blocks(_step(section, 1), "sql")
        with psycopg.connect(owner_url, autocommit=True) as conn:
            conn.execute(create_table.encode())
        # 2. mcsync migrate, as the owner: nothing refused.
        apply_migrations(owner_url, mapping=DEFAULT_MAPPING, notice=lambda _: None)

        # 3. Every psql line stops at the first error; the step says CREATEROLE is needed, and
        #    it is: the owner without it cannot make the logins.
        step3 = _step(section, 3)
        (shell,) = _blocks(step3, "sh")
        psql_lines = [line for line in shell.splitlines() if "psql" in line]
        assert len(psql_lines) == 3
        assert all("-v ON_ERROR_STOP=1" in line for line in psql_lines)
        assert "CREATEROLE" in step3
        creates = [
            re.search(r'-c "(CREATE ROLE .*?)"', line).group(1)  # type: ignore[union-attr]
            for line in psql_lines[1:]
        ]
        # Roles are claimed per install (MCSYNC_ROLE_PREFIX): this install's own, since the
        # cluster's `mcsync_*` roles belong to the test suite's other databases.
        statements = [
            render_roles(c.replace("'...'", "'doc-login'").replace(name, login), prefix)
            for c in creates
            for name, login in logins.items()
            if name in c
        ]
        with psycopg.connect(owner_url, autocommit=True) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statements[0].encode())
        (grant_createrole,) = re.findall(r"`(ALTER ROLE owner CREATEROLE)`", step3)
        with psycopg.connect(empty_db_url, autocommit=True) as admin:
            admin.execute(grant_createrole.replace("owner", owner).encode())
        with psycopg.connect(owner_url, autocommit=True) as conn:
            conn.execute(render_roles(render(GRANTS, "mcsync"), prefix).encode())
            for statement in statements:
                conn.execute(statement.encode())
        with psycopg.connect(
            _as(empty_db_url, logins["mcsync_worker_login"], "doc-login"), autocommit=True
        ) as w:
            # The worker's login reads the contacts through the view, and not the app's table.
            assert w.execute("SELECT count(*) FROM mcsync.source_contacts").fetchone() == (0,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                w.execute("SELECT * FROM contacts")

        # What an install leaves: as many triggers on contacts as the table says.
        said = re.search(
            r"\| the app's `contacts` \| (\w+) statement-level triggers", INSTALL.read_text()
        )
        assert said is not None
        with psycopg.connect(owner_url, autocommit=True) as conn:
            (installed,) = conn.execute(
                "SELECT count(*) FROM pg_catalog.pg_trigger"
                " WHERE tgrelid = 'public.contacts'::regclass AND NOT tgisinternal"
            ).fetchone()  # type: ignore[misc]
        assert NUMBERS[said.group(1)] == installed == 4

        # 4. What each process must be given.
        step4 = _step(section, 4)
        for variable in (
            "DATABASE_URL",
            "MCSYNC_ENCRYPTION_KEYS",
            "MCSYNC_JWKS_URL",
            "MCSYNC_JWT_SECRET",
            "MCSYNC_APP_ORIGIN",
            "MAILCHIMP_CLIENT_ID",
            "MAILCHIMP_CLIENT_SECRET",
            "MAILCHIMP_REDIRECT_URI",
        ):
            assert variable in step4, variable
    finally:
        with psycopg.connect(empty_db_url, autocommit=True) as admin:
            me = admin.execute("SELECT current_user").fetchone()[0]  # type: ignore[index]
            admin.execute(
                sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                    sql.Identifier(database), sql.Identifier(me)
                )
            )
            for role in (*logins.values(), *role_names(prefix), owner):
                exists = admin.execute(
                    "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", (role,)
                ).fetchone()
                if exists is None:  # the test stopped before making it
                    continue
                admin.execute(
                    sql.SQL("REASSIGN OWNED BY {} TO {}").format(
                        sql.Identifier(role), sql.Identifier(me)
                    )
                )
                admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
