"""Issue 17: hostile neighbours inside the app's database, each attack tried on a real Postgres.

A neighbour here is a role of the app's own database: one that can create objects in `public`
(every role on PostgreSQL 14 and older), a signed-in coach writing rows of the app's tables,
a second install in the same cluster, a role that created a schema named `mcsync` first."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.fernet import Fernet

from mcsync.embedded import database_url
from mcsync.migrate import SQL_DIR, apply_migrations, migrate_and_bind_tokens, migrations_script
from mcsync.roles import grants_script
from mcsync.source import DEFAULT_MAPPING
from tests.conftest import CONTACTS_DDL, AppTemplates, app_database
from tests.support.app_schemas import TAG_TABLE_BIRTHDAY
from tests.support.harness import ENCRYPTION_KEY, SyncHarness
from tests.support.roles import FRESH_PREFIX, install_roles, login_url

NEIGHBOUR = "mcsync_test_neighbour"

# Exact-signature overloads of the catalog functions mcsync's SQL calls (variadic or
# polymorphic there, so an exact match in `public` would win), each recording that it ran and
# then doing what the real one does, so nothing else fails and only the record tells.
PLANTS = """
CREATE TABLE public.planted_calls (name text, caller text);
GRANT INSERT, SELECT ON public.planted_calls TO PUBLIC;
CREATE FUNCTION public.format(f text, a regclass) RETURNS text LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.planted_calls VALUES ('format/2', current_user);
      RETURN pg_catalog.format(f, a); END $$;
CREATE FUNCTION public.format(f text, a name, b regclass) RETURNS text LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.planted_calls VALUES ('format/3', current_user);
      RETURN pg_catalog.format(f, a, b); END $$;
CREATE FUNCTION public.format(f text, a text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.planted_calls VALUES ('format/text', current_user);
      RETURN pg_catalog.format(f, a); END $$;
CREATE FUNCTION public.jsonb_build_object(a text, b text, c text, d text, e text, f text)
RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.planted_calls VALUES ('jsonb_build_object', current_user);
      RETURN pg_catalog.jsonb_build_object(a, b, c, d, e, f); END $$;
CREATE FUNCTION public.jsonb_build_object(a text, b text, c text, d text)
RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.planted_calls VALUES ('jsonb_build_object/4', current_user);
      RETURN pg_catalog.jsonb_build_object(a, b, c, d); END $$;
CREATE FUNCTION public.to_char(d date, f text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.planted_calls VALUES ('to_char', current_user);
      RETURN pg_catalog.to_char(d::timestamp, f); END $$;
CREATE FUNCTION public.unnest(a uuid[]) RETURNS SETOF uuid LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.planted_calls VALUES ('unnest/uuid', current_user);
      RETURN QUERY SELECT * FROM pg_catalog.unnest(a); END $$;
CREATE FUNCTION public.unnest(a text[]) RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.planted_calls VALUES ('unnest/text', current_user);
      RETURN QUERY SELECT * FROM pg_catalog.unnest(a); END $$;
CREATE FUNCTION public.array_length(a uuid[], d int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.planted_calls VALUES ('array_length', current_user);
      RETURN pg_catalog.array_length(a, d); END $$;
CREATE FUNCTION public.cardinality(a uuid[]) RETURNS int LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.planted_calls VALUES ('cardinality', current_user);
      RETURN pg_catalog.cardinality(a); END $$;
CREATE FUNCTION public.array_fill(a text, b int[]) RETURNS text[] LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.planted_calls VALUES ('array_fill', current_user);
      RETURN pg_catalog.array_fill(a, b); END $$;
"""


def _admin(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True)


def _neighbour(url: str) -> None:
    """A role that may create objects in `public` (PostgreSQL 14's default for every role)."""
    with _admin(url) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (NEIGHBOUR,)).fetchone():
            conn.execute(f"CREATE ROLE {NEIGHBOUR} LOGIN PASSWORD 'mcsync-test-login'")
        conn.execute(f"GRANT CREATE, USAGE ON SCHEMA public TO {NEIGHBOUR}")


def _plant(url: str) -> None:
    _neighbour(url)
    with psycopg.connect(login_url(url, NEIGHBOUR), autocommit=True) as conn:
        conn.execute(PLANTS.encode())


def _planted_calls(url: str) -> list[tuple[str, str]]:
    with _admin(url) as conn:
        return [tuple(r) for r in conn.execute("SELECT * FROM public.planted_calls").fetchall()]


@pytest.fixture
def planted_db(empty_db_url: str) -> Iterator[str]:
    """A database with the app's contacts table where a neighbour planted overloads in
    `public` before mcsync was installed."""
    with _admin(empty_db_url) as conn:
        conn.execute(CONTACTS_DDL.encode())
    _plant(empty_db_url)
    yield empty_db_url


def _view_dependencies(url: str) -> set[str]:
    """The schemas of every function, operator and type the generated view's rule uses."""
    with _admin(url) as conn:
        rows = conn.execute(
            """SELECT DISTINCT n.nspname
                 FROM pg_depend d
                 JOIN pg_rewrite r ON r.oid = d.objid AND d.classid = 'pg_rewrite'::regclass
                 LEFT JOIN pg_proc p ON d.refclassid = 'pg_proc'::regclass AND p.oid = d.refobjid
                 LEFT JOIN pg_operator o
                        ON d.refclassid = 'pg_operator'::regclass AND o.oid = d.refobjid
                 LEFT JOIN pg_type t ON d.refclassid = 'pg_type'::regclass AND t.oid = d.refobjid
                 JOIN pg_namespace n ON n.oid = coalesce(p.pronamespace, o.oprnamespace,
                                                         t.typnamespace)
                WHERE r.ev_class = 'mcsync.source_contacts'::regclass"""
        ).fetchall()
    return {r[0] for r in rows}


def test_overloads_planted_before_the_install_never_run(planted_db: str, emulator: Any) -> None:
    from mcsync.reconcile import request_sync_now
    from tests.e2e.web.conftest import sync_now_run, verify_audit, web_settings

    apply_migrations(planted_db)  # migrate
    install_roles(planted_db)  # grants, as `mcsync sql --grants | psql` would
    assert _planted_calls(planted_db) == []
    assert _view_dependencies(planted_db) <= {"pg_catalog", "mcsync"}

    sync = SyncHarness(planted_db, emulator)
    user = sync.add_user()
    contact = sync.add_contact(user, "ann@clientmail.io", first_name="Ann", tags=["vip"])
    sync.drain()  # the worker, as its login
    assert sync.members(user)["ann@clientmail.io"]["merge_fields"]["FNAME"] == "Ann"
    sync.update_contact(contact, first_name="Annie")
    sync.drain()
    settings = web_settings(sync)  # Sync Now and verify, as the web login
    with psycopg.connect(planted_db, autocommit=True) as conn:
        assert request_sync_now(conn, user.user_id, min_interval=0) == 0
    sync_now_run(settings, sync.cipher, user.user_id, owner="t")
    assert verify_audit(settings, sync.cipher, user.user_id) == []
    apply_migrations(planted_db)  # a rerun regenerates everything
    install_roles(planted_db)
    assert _planted_calls(planted_db) == []


def test_the_script_for_other_tools_runs_none_and_locks_down_what_it_generates(
    planted_db: str,
) -> None:
    # The database's default privileges give the neighbour everything anybody creates.
    with _admin(planted_db) as conn:
        for kind in ("TABLES", "FUNCTIONS", "SEQUENCES", "TYPES"):
            conn.execute(f"ALTER DEFAULT PRIVILEGES GRANT ALL ON {kind} TO {NEIGHBOUR}")
        with conn.transaction():
            conn.execute(migrations_script("mcsync", mapping=DEFAULT_MAPPING).encode())
        conn.execute(grants_script(prefix=FRESH_PREFIX).encode())
        assert _planted_calls(planted_db) == []
        assert _view_dependencies(planted_db) <= {"pg_catalog", "mcsync"}
        # Nothing of mcsync's is executable by PUBLIC (but the index's email key) or granted
        # to the neighbour, the generated view and trigger functions included.
        leaks = conn.execute(
            """SELECT p.oid::regprocedure::text FROM pg_proc p
                WHERE p.pronamespace = 'mcsync'::regnamespace
                  AND p.proname <> 'mcsync_email_key'
                  AND (has_function_privilege('public', p.oid, 'EXECUTE')
                       OR has_function_privilege(%(n)s, p.oid, 'EXECUTE'))
               UNION ALL
               SELECT c.oid::regclass::text FROM pg_class c
                WHERE c.relnamespace = 'mcsync'::regnamespace AND c.relkind IN ('r', 'v', 'S')
                  AND EXISTS (SELECT 1 FROM aclexplode(c.relacl) a
                               WHERE a.grantee = %(n)s::regrole)""",
            {"n": NEIGHBOUR},
        ).fetchall()
        assert leaks == []
        assert "mcsync.mcsync_enqueue_inserted()" in {
            r[0]
            for r in conn.execute(
                "SELECT oid::regprocedure::text FROM pg_proc"
                " WHERE pronamespace = 'mcsync'::regnamespace"
            ).fetchall()
        }


def test_a_schema_someone_else_created_first_is_refused(planted_db: str) -> None:
    from mcsync.migrate import MigrationError

    with psycopg.connect(login_url(planted_db, NEIGHBOUR), autocommit=True) as conn:
        with _admin(planted_db) as admin:
            admin.execute(f"GRANT CREATE ON DATABASE {conn.info.dbname} TO {NEIGHBOUR}")
        conn.execute("CREATE SCHEMA mcsync")
    with pytest.raises(MigrationError, match=f"owned by {NEIGHBOUR}"):
        apply_migrations(planted_db)
    with _admin(planted_db) as conn:
        assert conn.execute("SELECT to_regclass('mcsync.mailchimp_connections')").fetchone() == (
            None,
        )
        # The script for other tools refuses it too (007's check), and applies nothing.
        with pytest.raises(psycopg.errors.RaiseException, match=f"owned by {NEIGHBOUR}"):
            with conn.transaction():
                conn.execute(migrations_script("mcsync", mapping=DEFAULT_MAPPING).encode())
        assert conn.execute("SELECT to_regclass('mcsync.mailchimp_connections')").fetchone() == (
            None,
        )


def test_a_writers_search_path_cannot_change_the_email_index(db_url: str) -> None:
    _neighbour(db_url)
    with _admin(db_url) as conn:
        conn.execute(f"GRANT INSERT, SELECT ON contacts TO {NEIGHBOUR}")
    user_id = uuid.uuid4()
    with psycopg.connect(login_url(db_url, NEIGHBOUR), autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION public.lower(text) RETURNS text LANGUAGE sql IMMUTABLE"
            " AS $$ SELECT 'planted' $$"
        )
        conn.execute("SET search_path = public, pg_catalog")
        conn.execute(
            "INSERT INTO contacts (user_id, email) VALUES (%s, ' Ann@ClientMail.io ')", (user_id,)
        )
    with _admin(db_url) as conn:
        conn.execute("SET enable_seqscan = off")
        # The index scan finds the row by its true key, and no row has the planted one.
        found = conn.execute(
            "SELECT count(*) FROM contacts WHERE user_id = %s"
            " AND mcsync.mcsync_email_key(email::text) = %s",
            (user_id, "ann@clientmail.io"),
        ).fetchone()
        planted = conn.execute(
            "SELECT count(*) FROM contacts WHERE user_id = %s"
            " AND mcsync.mcsync_email_key(email::text) = 'planted'",
            (user_id,),
        ).fetchone()
        plan = conn.execute(
            "EXPLAIN SELECT 1 FROM contacts WHERE user_id = %s"
            " AND mcsync.mcsync_email_key(email::text) = 'x'",
            (user_id,),
        ).fetchall()
    assert "contacts_mcsync_email_idx" in " ".join(r[0] for r in plan)  # still inlined
    assert (found, planted) == ((1,), (0,))


def test_a_coachs_tag_row_on_another_coachs_contact_tags_nobody(
    app_templates: AppTemplates, emulator: Any
) -> None:
    with app_database(app_templates, TAG_TABLE_BIRTHDAY) as url:
        sync = SyncHarness(url, emulator, app=TAG_TABLE_BIRTHDAY)
        coach_a, _ = sync.mirrored_contact("own@clientmail.io", tags=["mine"])
        coach_b, b_client = sync.mirrored_contact("bea@clientmail.io", tags=["vip"])
        # Coach A writes a tag row of their own (RLS by coach_id lets it in) naming B's client.
        sync.execute(
            "INSERT INTO public.client_tags (client_id, tag, coach_id) VALUES (%s, 'x', %s)",
            (b_client, coach_a.user_id),
        )
        sync.drain()
        assert sync.tags(coach_b, "bea@clientmail.io") == {"vip"}
        assert sync.execute(
            "SELECT tags FROM mcsync.source_contacts WHERE id = %s", (b_client,)
        ) == [{"tags": ["vip"]}]
        # A Sync Now-style full pass agrees: the view is where every reader takes tags from.
        with psycopg.connect(url, autocommit=True) as conn:
            from mcsync.connections import queue_full_sync

            queue_full_sync(conn, coach_b.user_id)
        sync.drain()
        assert sync.tags(coach_b, "bea@clientmail.io") == {"vip"}
        assert sync.tags(coach_a, "own@clientmail.io") == {"mine"}


def _fresh_install(admin_url: str, name: str) -> str:
    with _admin(admin_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = database_url(admin_url, name)
    with _admin(url) as conn:
        conn.execute(CONTACTS_DDL.encode())
    apply_migrations(url)
    return url


def test_a_login_of_one_install_cannot_read_another_in_the_same_cluster(
    pg_admin_url: str,
) -> None:
    names = [f"mcsync_t_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    try:
        one, two = (_fresh_install(pg_admin_url, n) for n in names)
        install_roles(one, "mcsync_one")
        # The same roles for the second install are refused, and nothing is granted.
        with _admin(two) as conn, pytest.raises(psycopg.errors.RaiseException) as refused:
            conn.execute(grants_script(prefix="mcsync_one").encode())
        assert f"belongs to the mcsync install in database {names[0]}" in str(refused.value)
        install_roles(two, "mcsync_two")
        for own, other in ((one, two), (two, one)):
            with _admin(own) as conn:
                worker, web = (
                    r[0]
                    for r in conn.execute(
                        "SELECT role_name FROM mcsync.process_roles ORDER BY process DESC"
                    ).fetchall()
                )
            for login in (f"{worker}_test", f"{web}_test"):
                # CONNECT is PUBLIC's, so the login gets in, and reads nothing of mcsync.
                with psycopg.connect(login_url(other, login), autocommit=True) as conn:
                    for table in ("mailchimp_connections", "source_contacts", "install"):
                        with pytest.raises(psycopg.errors.InsufficientPrivilege):
                            conn.execute(f"SELECT * FROM mcsync.{table}")
                with psycopg.connect(login_url(own, login), autocommit=True) as conn:
                    conn.execute("SELECT count(*) FROM mcsync.source_contacts")
        # A new prefix for an install takes everything from the roles it named before.
        install_roles(one, "mcsync_one_b")
        with psycopg.connect(login_url(one, "mcsync_one_worker_test"), autocommit=True) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELECT * FROM mcsync.source_contacts")
        with psycopg.connect(login_url(one, "mcsync_one_b_worker_test"), autocommit=True) as conn:
            conn.execute("SELECT * FROM mcsync.source_contacts")
    finally:
        with _admin(pg_admin_url) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _old_install(url: str, tmp_path: Path) -> None:
    old = tmp_path / "old_sql"
    old.mkdir()
    for f in SQL_DIR.glob("00[13]_*.sql"):
        (old / f.name).write_text(f.read_text())
    first_002 = Path(__file__).parent / "fixtures" / "002_contacts_triggers.v1.sql"
    (old / "002_contacts_triggers.sql").write_text(first_002.read_text())
    apply_migrations(url, old)


def _hash(email: str) -> str:
    return hashlib.md5(email.lower().encode()).hexdigest()


def test_an_upgrade_of_an_exposed_install_trusts_none_of_its_rows(
    empty_db_url: str, emulator: Any, tmp_path: Path
) -> None:
    from mcsync.crypto import TokenCipher

    url = empty_db_url
    with _admin(url) as conn:
        conn.execute(CONTACTS_DDL.encode())
    _old_install(url, tmp_path)
    coach = emulator.admin.create_account(
        dc="us1", account_name="Coach", audiences=[{"id": "list0001", "name": "Coach"}]
    )
    victim = emulator.admin.create_account(
        dc="us1", account_name="Victim", audiences=[{"id": "list0002", "name": "Victim"}]
    )
    coach_id, thief_id, victim_id, forged_dc_id = (uuid.uuid4() for _ in range(4))
    fernet = Fernet(ENCRYPTION_KEY.encode())
    victim_token = fernet.encrypt(victim["access_token"].encode()).decode()
    # A marketer added this member by hand; mcsync never made it.
    emulator.admin.add_member("list0001", "marketer@clientmail.io")
    with _admin(url) as conn:
        insert = (
            "INSERT INTO mailchimp_connections (user_id, access_token_encrypted, dc,"
            " api_endpoint, audience_id) VALUES (%s, %s, %s, %s, %s)"
        )
        conn.execute(
            insert,
            (
                coach_id,
                fernet.encrypt(coach["access_token"].encode()).decode(),
                "us1",
                emulator.url,
                "list0001",
            ),
        )
        conn.execute(insert, (victim_id, victim_token, "us1", emulator.url, "list0002"))
        # What `anon` could write while these tables were in `public`: the victim's ciphertext
        # copied into another row, a connection pointing its token at another host, a ledger
        # row claiming the hand-added member, and a queued delete of it.
        conn.execute(insert, (thief_id, victim_token, "us1", emulator.url, "list0002"))
        conn.execute(insert, (forged_dc_id, victim_token, "evil.example/x", emulator.url, "l"))
        contact = conn.execute(
            "INSERT INTO contacts (user_id, email, first_name) VALUES (%s, %s, 'Real')"
            " RETURNING id",
            (coach_id, "real@clientmail.io"),
        ).fetchone()
        ghost = uuid.uuid4()
        conn.execute(
            "INSERT INTO mailchimp_members (user_id, audience_id, email_hash, email, status)"
            " VALUES (%s, 'list0001', %s, 'marketer@clientmail.io', 'subscribed')",
            (coach_id, _hash("marketer@clientmail.io")),
        )
        conn.execute(
            "INSERT INTO mailchimp_contact_links (user_id, contact_id, audience_id, email_hash)"
            " VALUES (%s, %s, 'list0001', %s)",
            (coach_id, ghost, _hash("marketer@clientmail.io")),
        )
        conn.execute(
            "INSERT INTO mailchimp_sync_queue (user_id, contact_id, op, email)"
            " VALUES (%s, %s, 'delete', 'marketer@clientmail.io')",
            (coach_id, ghost),
        )

    applied, unbound = migrate_and_bind_tokens(url, TokenCipher([ENCRYPTION_KEY]))
    assert "004_own_schema.sql" in applied and unbound == 0  # the bad dc did not fail 004
    with _admin(url) as conn:
        rows = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT user_id, sync_status, access_token_encrypted, notice, status_reason"
                " FROM mcsync.mailchimp_connections"
            ).fetchall()
        }
        quarantined = conn.execute(
            "SELECT user_id, dc, reason FROM mcsync.quarantined_connections"
        ).fetchall()
        ledger = conn.execute("SELECT count(*) FROM mcsync.mailchimp_members").fetchone()
        queue = conn.execute(
            "SELECT contact_id, op FROM mcsync.mailchimp_sync_queue ORDER BY 1"
        ).fetchall()
    assert set(rows) == {coach_id, thief_id, victim_id}
    assert quarantined == [(forged_dc_id, "evil.example/x", "dc not of Mailchimp's form")]
    # The ciphertext two rows held is nobody's: both ask their user, calmly, to reconnect.
    for held_twice in (thief_id, victim_id):
        status, token, notice, reason = rows[held_twice]
        assert (status, token, reason) == ("error", "", "token_withdrawn")
        assert notice.startswith("Please reconnect")
    assert rows[coach_id][0] == "active"
    assert ledger == (0,) and queue == [(contact[0], "resync")]  # rebuilt, not carried over

    install_roles(url)
    sync = SyncHarness(url, emulator)
    sync.drain()
    members = {m["email_address"]: m for m in emulator.admin.members("list0001")}
    assert members["marketer@clientmail.io"]["status"] == "subscribed"
    assert members["real@clientmail.io"]["merge_fields"]["FNAME"] == "Real"
    assert emulator.admin.members("list0002") == []


def test_the_script_for_other_tools_upgrades_an_exposed_install_the_same_way(
    empty_db_url: str, tmp_path: Path
) -> None:
    url = empty_db_url
    with _admin(url) as conn:
        conn.execute(CONTACTS_DDL.encode())
    _old_install(url, tmp_path)
    good, bad = uuid.uuid4(), uuid.uuid4()
    with _admin(url) as conn:
        for user_id, dc in ((good, "us1"), (bad, "evil.example/x")):
            conn.execute(
                "INSERT INTO mailchimp_connections (user_id, access_token_encrypted, dc,"
                " api_endpoint, audience_id) VALUES (%s, %s, %s, 'https://x', 'list0001')",
                (user_id, f"token-of-{user_id}", dc),
            )
        conn.execute(
            "INSERT INTO contacts (user_id, email) VALUES (%s, 'a@clientmail.io')", (good,)
        )
        conn.execute(
            "INSERT INTO mailchimp_sync_queue (user_id, contact_id, op, email)"
            " VALUES (%s, %s, 'delete', 'forged@clientmail.io')",
            (good, uuid.uuid4()),
        )
        with conn.transaction():
            conn.execute(migrations_script("mcsync", after="003", mapping=DEFAULT_MAPPING).encode())
        assert conn.execute("SELECT user_id FROM mcsync.quarantined_connections").fetchall() == [
            (bad,)
        ]
        assert conn.execute("SELECT op FROM mcsync.mailchimp_sync_queue").fetchall() == [
            ("resync",)
        ]
        assert conn.execute("SELECT to_regclass('public.mailchimp_connections')").fetchone() == (
            None,
        )
