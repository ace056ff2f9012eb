"""mcsync installed in a database set up the way Supabase sets one up, on real Postgres.

Supabase's roles (`anon`, `authenticated`, `service_role`), its default privileges on `public`
(every new table, function and sequence granted to all three, as in its initial schema), an
`auth` schema with `auth.users` and `auth.uid()` reading the JWT's `sub` claim the way
PostgREST sets it, and the app's `contacts` with row level security by `auth.uid()`. Then the
install steps of docs/install.md: `mcsync migrate`, and `mcsync sql --grants` applied."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import sql

from mcsync.migrate import SQL_DIR
from mcsync.roles import render_roles
from tests.conftest import create_process_logins
from tests.support.harness import SyncHarness
from tests.support.roles import FRESH_PREFIX, worker_url

PUBLIC_ROLES = ("anon", "authenticated")
SUPABASE_SETUP = """
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
        CREATE ROLE anon NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
        CREATE ROLE authenticated NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
        CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
    END IF;
END $$;

GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT ALL ON FUNCTIONS TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT ALL ON SEQUENCES TO anon, authenticated, service_role;

CREATE SCHEMA auth;
GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;
CREATE TABLE auth.users (id uuid PRIMARY KEY, email text);
-- As Supabase defines it: the `sub` claim PostgREST puts in the request settings.
CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        nullif(current_setting('request.jwt.claim.sub', true), ''),
        (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
    )::uuid
$$;

CREATE TABLE public.contacts (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL REFERENCES auth.users (id),
    first_name  text,
    last_name   text,
    email       text,
    phone       text,
    tags        text[] NOT NULL DEFAULT '{}',
    notes       text
);
ALTER TABLE public.contacts ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_select ON public.contacts FOR SELECT TO authenticated
    USING (auth.uid() = user_id);
CREATE POLICY own_insert ON public.contacts FOR INSERT TO authenticated
    WITH CHECK (auth.uid() = user_id);
CREATE POLICY own_update ON public.contacts FOR UPDATE TO authenticated
    USING (auth.uid() = user_id) WITH CHECK (auth.uid() = user_id);
CREATE POLICY own_delete ON public.contacts FOR DELETE TO authenticated
    USING (auth.uid() = user_id);
"""
MCSYNC = [sys.executable, "-m", "mcsync.cli"]


@pytest.fixture
def supabase_url(empty_db_url: str) -> Iterator[str]:
    """A Supabase-like database after the install steps: migrate, then the grants."""
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(SUPABASE_SETUP.encode())
    # This cluster's `mcsync_*` roles belong to the tests' template install: this install
    # takes roles of its own, as docs/install.md says a second install in a cluster does.
    env = {**os.environ, "DATABASE_URL": empty_db_url, "MCSYNC_ROLE_PREFIX": FRESH_PREFIX}
    run = subprocess.run([*MCSYNC, "migrate"], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    grants = subprocess.run([*MCSYNC, "sql", "--grants"], capture_output=True, text=True, env=env)
    assert grants.returncode == 0, grants.stderr
    written = render_roles((SQL_DIR / "grants.sql").read_text(), FRESH_PREFIX)
    assert grants.stdout.strip() == written.strip()
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(grants.stdout.encode())
    create_process_logins(empty_db_url)
    yield empty_db_url


def _catalog(url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query).fetchall()


_TABLE_STATEMENTS = (
    "SELECT * FROM {t}",
    "SELECT count(*) FROM {t}",
    "INSERT INTO {t} DEFAULT VALUES",
    "UPDATE {t} SET {c} = {c}",
    "DELETE FROM {t}",
    "TRUNCATE {t}",
)
_SEQUENCE_STATEMENTS = ("SELECT nextval({s})", "SELECT setval({s}, 1)")


def _attempts(url: str) -> list[sql.Composable]:
    """Every way to touch an mcsync object, by its qualified name and by its old `public` one."""
    tables = _catalog(
        url,
        "SELECT c.relname, (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = c.oid"
        "  AND a.attnum = 1) FROM pg_class c"
        " WHERE c.relnamespace = 'mcsync'::regnamespace AND c.relkind IN ('r', 'v') ORDER BY 1",
    )
    assert len(tables) == 16  # 15 tables (the health history, three from 007) and the view
    sequences = _catalog(
        url,
        "SELECT relname FROM pg_class WHERE relnamespace = 'mcsync'::regnamespace"
        " AND relkind = 'S'",
    )
    assert len(sequences) == 3  # the identities of the queue, the bulk table, the health history
    routines = _catalog(
        url,
        "SELECT p.proname, p.prokind, p.pronargs FROM pg_proc p"
        " WHERE p.pronamespace = 'mcsync'::regnamespace ORDER BY 1",
    )
    assert {r[0] for r in routines} >= {"mcsync_email_key", "mcsync_enqueue_deleted", "lock_down"}
    out: list[sql.Composable] = []
    for schema in ("mcsync", "public"):
        for table, column in tables:
            table_id, column_id = sql.Identifier(schema, table), sql.Identifier(column)
            out += [sql.SQL(st).format(t=table_id, c=column_id) for st in _TABLE_STATEMENTS]
        for (seq,) in sequences:
            qualified = sql.Literal(f"{schema}.{seq}")
            out += [sql.SQL(st).format(s=qualified) for st in _SEQUENCE_STATEMENTS]
        for name, kind, nargs in routines:
            args = sql.SQL(", ").join([sql.SQL("NULL")] * nargs)
            verb = sql.SQL("CALL" if kind == "p" else "SELECT")
            out.append(sql.SQL("{} {}({})").format(verb, sql.Identifier(schema, name), args))
    return out


@pytest.mark.parametrize("role", PUBLIC_ROLES)
def test_the_public_roles_can_touch_nothing_of_mcsync(supabase_url: str, role: str) -> None:
    attempts = _attempts(supabase_url)
    with psycopg.connect(supabase_url, autocommit=True) as conn:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
        conn.execute("SELECT set_config('request.jwt.claim.sub', %s, false)", (str(uuid.uuid4()),))
        for attempt in attempts:
            with pytest.raises(
                (
                    psycopg.errors.InsufficientPrivilege,
                    psycopg.errors.UndefinedTable,
                    psycopg.errors.UndefinedFunction,
                )
            ) as refused:
                conn.execute(attempt)
            text = attempt.as_string(conn)
            if '"mcsync".' in text or "'mcsync." in text:
                # By its real name: refused for want of the schema, before any row is read.
                assert isinstance(refused.value, psycopg.errors.InsufficientPrivilege), text
                assert "schema mcsync" in str(refused.value), text


def test_no_acl_in_mcsyncs_schema_names_a_public_role(supabase_url: str) -> None:
    granted = _catalog(
        supabase_url,
        """SELECT c.relname, r.rolname FROM pg_class c, aclexplode(c.relacl) a
             JOIN pg_roles r ON r.oid = a.grantee
            WHERE c.relnamespace = 'mcsync'::regnamespace
              AND r.rolname IN ('anon', 'authenticated', 'service_role')
           UNION ALL
           SELECT p.proname, r.rolname FROM pg_proc p, aclexplode(p.proacl) a
             JOIN pg_roles r ON r.oid = a.grantee
            WHERE p.pronamespace = 'mcsync'::regnamespace
              AND r.rolname IN ('anon', 'authenticated', 'service_role')""",
    )
    assert granted == []
    for role in (*PUBLIC_ROLES, "service_role"):
        [(usage,)] = _catalog(
            supabase_url, f"SELECT has_schema_privilege('{role}', 'mcsync', 'USAGE')"
        )
        assert usage is False


def test_row_level_security_hides_every_row_even_from_a_role_granted_the_table(
    supabase_url: str, emulator: Any
) -> None:
    """Defence in depth: an install that exposes the schema anyway (grants it to a public role)
    still shows that role no row: RLS is on, and no policy names it."""
    sync = SyncHarness(supabase_url, emulator)
    user_id = uuid.uuid4()
    sync.execute("INSERT INTO auth.users (id) VALUES (%s)", (user_id,))
    sync.connect(_user(sync, user_id))
    sync.execute("GRANT USAGE ON SCHEMA mcsync TO anon")
    sync.execute("GRANT SELECT, UPDATE ON mcsync.mailchimp_connections TO anon")
    with psycopg.connect(supabase_url, autocommit=True) as conn:
        conn.execute("SET ROLE anon")
        assert conn.execute("SELECT * FROM mcsync.mailchimp_connections").fetchall() == []
        updated = conn.execute("UPDATE mcsync.mailchimp_connections SET dc = 'us2'").rowcount
        assert updated == 0
    assert [r["dc"] for r in sync.execute("SELECT dc FROM mcsync.mailchimp_connections")] == ["us1"]


def _user(sync: SyncHarness, user_id: uuid.UUID) -> Any:
    from tests.support.harness import User

    account = sync.admin.create_account(
        dc="us1", account_name="Coach", audiences=[{"id": f"a{user_id.hex[:8]}", "name": "A"}]
    )
    return User(user_id, f"a{user_id.hex[:8]}", account["access_token"])


def test_an_authenticated_users_own_changes_are_mirrored(supabase_url: str, emulator: Any) -> None:
    sync = SyncHarness(supabase_url, emulator)  # the worker runs as the mcsync_worker login
    me, other = uuid.uuid4(), uuid.uuid4()
    sync.execute("INSERT INTO auth.users (id) VALUES (%s), (%s)", (me, other))
    mine, theirs = _user(sync, me), _user(sync, other)
    sync.connect(mine)
    sync.connect(theirs)
    [(their_contact,)] = [
        tuple(r.values())
        for r in sync.execute(
            "INSERT INTO contacts (user_id, email) VALUES (%s, 'their@clientmail.io') RETURNING id",
            (other,),
        )
    ]

    # The app's own session for `me`, as PostgREST runs it.
    with _session_of(supabase_url, me) as app:
        ids = [
            app.execute(
                "INSERT INTO contacts (user_id, email, first_name, tags)"
                " VALUES (%s, %s, 'Mine', '{vip}') RETURNING id",
                (me, email),
            ).fetchone()[0]  # type: ignore[index]
            for email in ("kept@clientmail.io", "edited@clientmail.io", "deleted@clientmail.io")
        ]
    sync.drain()
    assert set(sync.members(mine)) == {
        "kept@clientmail.io",
        "edited@clientmail.io",
        "deleted@clientmail.io",
    }

    with _session_of(supabase_url, me) as app:
        app.execute("UPDATE contacts SET first_name = 'Edited' WHERE id = %s", (ids[1],))
        app.execute("DELETE FROM contacts WHERE id = %s", (ids[2],))
        # RLS keeps `me` away from `other`'s contacts: nothing changes, nothing is queued.
        hijack = "UPDATE contacts SET email = 'hijack@evil.test' WHERE id = %s"
        assert app.execute(hijack, (their_contact,)).rowcount == 0
        assert app.execute("SELECT count(*) FROM contacts").fetchone() == (2,)

    # The worker's login sees every user's contacts through mcsync's view of them (the synced
    # columns, generated from the source mapping), and nothing of the app's table itself.
    with psycopg.connect(worker_url(supabase_url), autocommit=True) as worker:
        assert worker.execute("SELECT count(*) FROM mcsync.source_contacts").fetchone() == (3,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            worker.execute("SELECT count(*) FROM contacts")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            worker.execute("DELETE FROM contacts")
    sync.drain()
    members = sync.members(mine)
    assert members["kept@clientmail.io"]["status"] == "subscribed"
    assert members["edited@clientmail.io"]["merge_fields"]["FNAME"] == "Edited"
    assert members["deleted@clientmail.io"]["status"] == "archived"
    assert set(sync.members(theirs)) == {"their@clientmail.io"}
    assert sync.queue() == []


@contextmanager
def _session_of(url: str, user_id: uuid.UUID) -> Iterator[psycopg.Connection[Any]]:
    """A session as PostgREST opens one for a signed-in user: role `authenticated`, the JWT's
    `sub` in `request.jwt.claim.sub`."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET ROLE authenticated")
        conn.execute("SELECT set_config('request.jwt.claim.sub', %s, false)", (str(user_id),))
        yield conn
