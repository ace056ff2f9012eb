"""The source mapping (mcsync.toml): parsed with errors that name the key, checked against the
catalog at migrate (each kind of mistake is a clear error and changes nothing), and a change of
it regenerates the triggers and queues a full sync that the mirror follows. The mirror contract
itself runs against other schemas in tests/e2e/test_pipeline.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from mcsync.migrate import MigrationError, apply_migrations, migrations_script
from mcsync.reconcile import request_sync_now
from mcsync.source import DEFAULT_MAPPING, MappingError, load_mapping, parse_mapping
from tests.conftest import AppTemplates, app_database
from tests.support.app_schemas import CONTACTS, RENAMED_SOFT_DELETE, TAG_TABLE_BIRTHDAY
from tests.support.harness import SyncHarness


def _rows(url: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def _triggers(url: str) -> list[tuple[str, str]]:
    return [
        (r[0], r[1])
        for r in _rows(
            url,
            "SELECT tgname, tgrelid::regclass::text FROM pg_trigger t"
            " JOIN pg_proc p ON p.oid = t.tgfoid"
            " WHERE p.pronamespace = 'mcsync'::regnamespace AND NOT tgisinternal ORDER BY 1",
        )
    ]


# --- parsing -------------------------------------------------------------------------------


def test_no_config_is_the_schema_mcsync_started_with(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MCSYNC_CONFIG", raising=False)
    mapping = load_mapping()
    assert mapping == DEFAULT_MAPPING
    assert (mapping.table, mapping.id, mapping.tenant, mapping.email) == (
        "public.contacts",
        "id",
        "user_id",
        "email",
    )
    assert {t: f.column for t, f in mapping.merge_fields.items()} == {
        "FNAME": "first_name",
        "LNAME": "last_name",
        "PHONE": "phone",
    }
    assert mapping.filter is None


def test_a_config_file_from_mcsync_config(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mcsync.toml"
    path.write_text(TAG_TABLE_BIRTHDAY.toml or "")
    monkeypatch.setenv("MCSYNC_CONFIG", str(path))
    mapping = load_mapping()
    assert mapping.table == "public.clients" and mapping.tenant == "coach_id"
    assert mapping.merge_fields["BIRTHDAY"].type == "birthday"
    monkeypatch.setenv("MCSYNC_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(MappingError, match=r"MCSYNC_CONFIG=.*missing.toml: cannot read it"):
        load_mapping()


@pytest.mark.parametrize(
    ("toml", "said"),
    [
        ("[source]\ntabel = 'public.people'", r"source\.tabel: Extra inputs"),
        ("[source]\ntable = 'people'", r"source\.table: .*must be schema-qualified"),
        ("[source]\nid = 'id; DROP TABLE x'", r"source\.id: .*not a plain identifier"),
        (
            "[source.merge_fields]\nfirst = 'given_name'",
            r"source\.merge_fields: .*'first'.*merge tag",
        ),
        (
            "[source.merge_fields]\nBIRTHDAY = { column = 'born', type = 'birthdate' }",
            r"source\.merge_fields\.BIRTHDAY\.type",
        ),
        ("[source.tags]\ntable = 'public.t'", r"source\.tags\.(key|column)"),
        # Issue 17: a join table without its tenant column is refused, and says why.
        (
            "[source.tags]\ntable = 'public.t'\nkey = 'contact'\nname = 'tag'",
            r"source\.tags\.tenant: .*needs `tenant`.*same user",
        ),
        ("[source]\nfilter = 'true; DROP TABLE contacts'", r"source\.filter: .*one SQL boolean"),
        ("[source]\nfilter = 'true $$ || $$'", r"source\.filter: .*no dollar quotes"),
        ("[sauce]\ntable = 'public.people'", r"unknown section.*sauce"),
        ("[source\ntable = 1", r"not valid TOML"),
    ],
)
def test_a_config_mistake_names_the_key(toml: str, said: str) -> None:
    with pytest.raises(MappingError, match=said):
        parse_mapping(toml)


# --- checked against the catalog at migrate ---------------------------------------------------

PEOPLE = """
CREATE TABLE public.people (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(), owner uuid NOT NULL, code text,
    given_name text, email text, flag boolean, scores int[], born date, owner_text text
);
CREATE INDEX people_owner_idx ON public.people (owner);
CREATE TABLE public.people_tags (person text, tag text, n text, b uuid, o text);
"""
PEOPLE_OK = """
[source]
table = "public.people"
tenant = "owner"
merge_fields = { FNAME = "given_name" }
tags = false
"""


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"table": "public.persons"}, r'source\.table: the app\'s "persons" table was not found'),
        (
            {"tenant": "owner_text"},
            r"source\.tenant: column public\.people\.owner_text is text; need uuid",
        ),
        ({"id": "code"}, r"source\.id: column public\.people\.code is text; need uuid"),
        ({"email": "mail"}, r"source\.email: column public\.people\.mail does not exist"),
        (
            {"merge_fields": '{ FNAME = "first_name" }'},
            r"source\.merge_fields\.FNAME: column public\.people\.first_name does not exist",
        ),
        (
            {"merge_fields": '{ BIRTHDAY = { column = "flag", type = "birthday" } }'},
            r"source\.merge_fields\.BIRTHDAY: column public\.people\.flag is boolean; need a date",
        ),
        (
            {"merge_fields": '{ SCORE = { column = "born", type = "number" } }'},
            r"source\.merge_fields\.SCORE: column public\.people\.born is date; need a numeric",
        ),
        (
            {"tags": '{ column = "scores" }'},
            r"source\.tags\.column: .*scores is integer\[\]; need text\[\]",
        ),
        (
            {"tags": '{ table = "public.people_tags", key = "person", name = "n", tenant = "b" }'},
            r"source\.tags\.key: column public\.people_tags\.person is text; need uuid",
        ),
        (
            {"tags": '{ table = "public.people_tags", key = "person", name = "n", tenant = "o" }'},
            r"source\.tags\.tenant: column public\.people_tags\.o is text; need uuid",
        ),
        (
            {"filter": '"deleted_at IS NULL"'},
            r'source\.filter: .*column "deleted_at" does not exist',
        ),
        ({"filter": '"given_name"'}, r"source\.filter: .*not a boolean expression"),
    ],
)
def test_each_kind_of_mistake_is_a_clear_error_and_nothing_is_installed(
    empty_db_url: str, change: dict[str, str], said: str
) -> None:
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(PEOPLE.encode())
    lines = PEOPLE_OK.strip().splitlines()
    keys = {line.split(" = ")[0]: i for i, line in enumerate(lines) if " = " in line}
    for key, value in change.items():
        line = (
            f'{key} = "{value}"'
            if key in ("table", "tenant", "id", "email")
            else f"{key} = {value}"
        )
        if key in keys:
            lines[keys[key]] = line
        else:
            lines.insert(1, line)
    mapping = parse_mapping("\n".join(lines))
    with pytest.raises(MigrationError, match=said + r".*nothing was applied"):
        apply_migrations(empty_db_url, mapping=mapping)
    assert _rows(empty_db_url, "SELECT to_regnamespace('mcsync')") == [(None,)]
    assert _rows(empty_db_url, "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal") == [(0,)]


LOOSE_CONTACTS = """
CREATE TABLE public.contacts (
    id uuid, user_id uuid, first_name text, last_name text, email text, phone text, tags text[]
);
"""


def test_an_app_table_without_a_unique_not_null_id_and_tenant_is_refused_with_the_fix(
    empty_db_url: str,
) -> None:
    """Taken on trust, such a table broke the app: its INSERT without an id failed inside
    mcsync's trigger, and two rows with one id in one statement failed (ON CONFLICT ...
    cannot affect row a second time). Refused, naming each column and the statement that
    fixes it; nothing applied; the fixes as written make it pass."""
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(LOOSE_CONTACTS.encode())
    with pytest.raises(MigrationError) as refused:
        apply_migrations(empty_db_url, mapping=DEFAULT_MAPPING)
    said = str(refused.value)
    assert "nothing was applied" in said
    fixes = re.findall(r"Fix: (ALTER TABLE .*?;)", said)
    assert len(fixes) == 3, said
    assert "source.id: column public.contacts.id is not unique" in said
    assert "source.id: column public.contacts.id may be NULL" in said
    assert "source.tenant: column public.contacts.user_id may be NULL" in said
    assert _rows(empty_db_url, "SELECT to_regnamespace('mcsync')") == [(None,)]
    assert _rows(empty_db_url, "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal") == [(0,)]

    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        for fix in fixes:
            conn.execute(fix.encode())
    apply_migrations(empty_db_url, mapping=DEFAULT_MAPPING, notice=lambda _: None)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        # The app's own INSERT without an id now works through mcsync's trigger.
        conn.execute(
            "INSERT INTO contacts (user_id, email) VALUES (gen_random_uuid(), 'a@coachmail.io')"
        )


def test_a_unique_index_on_the_id_alone_is_enough_and_a_composite_one_is_not(
    empty_db_url: str,
) -> None:
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(LOOSE_CONTACTS.encode())
        conn.execute("ALTER TABLE contacts ALTER COLUMN id SET NOT NULL")
        conn.execute("ALTER TABLE contacts ALTER COLUMN user_id SET NOT NULL")
        conn.execute("CREATE UNIQUE INDEX contacts_user_id_id ON contacts (user_id, id)")
    with pytest.raises(MigrationError, match=r"source\.id: column public\.contacts\.id is not"):
        apply_migrations(empty_db_url, mapping=DEFAULT_MAPPING)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("CREATE UNIQUE INDEX contacts_id ON contacts (id)")
    apply_migrations(empty_db_url, mapping=DEFAULT_MAPPING, notice=lambda _: None)


def test_a_good_mapping_installs_and_warns_about_a_missing_index(empty_db_url: str) -> None:
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(PEOPLE.encode())
        conn.execute("DROP INDEX people_owner_idx")
    notices: list[str] = []
    apply_migrations(empty_db_url, mapping=parse_mapping(PEOPLE_OK), notice=notices.append)
    (warning,) = notices
    assert "source.tenant: no index starts with public.people.owner" in warning
    assert 'CREATE INDEX "people_owner_idx" ON "public"."people" ("owner");' in warning
    assert _triggers(empty_db_url) == [
        ("mcsync_contacts_deleted", "people"),
        ("mcsync_contacts_inserted", "people"),
        ("mcsync_contacts_truncated", "people"),
        ("mcsync_contacts_updated", "people"),
    ]


def test_a_mistake_in_a_changed_mapping_leaves_the_installed_one_working(
    db_url: str, emulator: Any
) -> None:
    before = _triggers(db_url)
    [(fingerprint,)] = _rows(db_url, "SELECT fingerprint FROM mcsync.source_mapping")
    broken = parse_mapping("[source.merge_fields]\nFNAME = 'nickname'")
    with pytest.raises(MigrationError, match=r"source\.merge_fields\.FNAME: column .*nickname"):
        apply_migrations(db_url, mapping=broken)
    assert _triggers(db_url) == before
    assert _rows(db_url, "SELECT fingerprint FROM mcsync.source_mapping") == [(fingerprint,)]
    sync = SyncHarness(db_url, emulator)
    user = sync.add_user()
    sync.add_contact(user, "still@clientmail.io", first_name="Still")
    sync.drain()
    assert sync.members(user)["still@clientmail.io"]["merge_fields"]["FNAME"] == "Still"


def test_the_script_for_other_tools_ends_with_the_generated_triggers() -> None:
    script = migrations_script("mcsync", mapping=RENAMED_SOFT_DELETE.mapping)
    tail = script.split("generated from the source mapping")[1]
    assert 'AFTER UPDATE ON "crm"."people"' in tail
    assert "COALESCE((deleted_at IS NULL), false)" in tail
    assert "INSERT INTO mcsync.source_mapping" in tail


# --- the filter: rows outside it are not contacts ----------------------------------------------


@pytest.fixture
def soft_deleting(app_templates: AppTemplates, emulator: Any) -> Iterator[SyncHarness]:
    with app_database(app_templates, RENAMED_SOFT_DELETE) as url:
        yield SyncHarness(url, emulator, app=RENAMED_SOFT_DELETE)


def test_soft_delete_archives_and_undelete_restores(soft_deleting: SyncHarness) -> None:
    sync = soft_deleting
    user, cid = sync.mirrored_contact("una@clientmail.io", first_name="Una", tags=["client"])
    assert sync.members(user)["una@clientmail.io"]["status"] == "subscribed"
    sync.delete_contact(cid)  # UPDATE crm.people SET deleted_at = now()
    sync.drain()
    assert sync.members(user)["una@clientmail.io"]["status"] == "archived"
    # Edits to a soft-deleted row are not changes of a contact.
    sync.update_contact(cid, first_name="Una (gone)")
    assert sync.queue() == []
    sync.execute("UPDATE crm.people SET deleted_at = NULL WHERE person_id = %s", (cid,))
    sync.drain()
    member = sync.members(user)["una@clientmail.io"]
    assert member["status"] == "subscribed"
    assert member["merge_fields"]["FNAME"] == "Una (gone)"
    assert {t["name"] for t in member["tags"]} == {"client"}
    assert sync.queue() == []


def test_rows_outside_the_filter_never_reach_mailchimp_not_even_by_sync_now(
    soft_deleting: SyncHarness,
) -> None:
    from tests.e2e.web.conftest import sync_now_run, web_settings

    sync = soft_deleting
    user = sync.add_user(connect=False)
    # A historical import the app marked before the connection existed.
    old = sync.add_contact(user, "old@clientmail.io", first_name="Old")
    sync.execute("UPDATE crm.people SET deleted_at = now() WHERE person_id = %s", (old,))
    sync.add_contact(user, "new@clientmail.io", first_name="New")
    assert sync.connect(user) == 1  # the connect-time full sync queues only the contact
    sync.drain()
    assert set(sync.members(user)) == {"new@clientmail.io"}
    with psycopg.connect(sync.db_url, autocommit=True) as conn:
        assert request_sync_now(conn, user.user_id) == 0
    sync_now_run(web_settings(sync), sync.cipher, user.user_id, owner="t")
    sync.drain()
    assert set(sync.members(user)) == {"new@clientmail.io"}
    assert sync.queue() == []


# --- an extra merge field ------------------------------------------------------------------


def test_birthday_from_a_date_column_is_sent_as_mm_dd(
    app_templates: AppTemplates, emulator: Any
) -> None:
    with app_database(app_templates, TAG_TABLE_BIRTHDAY) as url:
        sync = SyncHarness(url, emulator, app=TAG_TABLE_BIRTHDAY)
        user, cid = sync.mirrored_contact("bea@clientmail.io", birthday="1990-07-04", tags=["vip"])
        member = sync.members(user)["bea@clientmail.io"]
        assert member["merge_fields"]["BIRTHDAY"] == "07/04"
        assert {t["name"] for t in member["tags"]} == {"vip"}
        sync.update_contact(cid, birthday="1990-12-25")
        sync.drain()
        assert sync.members(user)["bea@clientmail.io"]["merge_fields"]["BIRTHDAY"] == "12/25"
        # A tag row of its own is a change of the contact.
        sync.execute(
            "INSERT INTO public.client_tags VALUES (%s, 'workshop', %s)", (cid, user.user_id)
        )
        sync.drain()
        assert sync.tags(user, "bea@clientmail.io") == {"vip", "workshop"}
        sync.execute("DELETE FROM public.client_tags WHERE tag = 'vip'")
        sync.drain()
        assert sync.tags(user, "bea@clientmail.io") == {"workshop"}


# --- changing the mapping ------------------------------------------------------------------


def test_a_changed_mapping_regenerates_the_triggers_and_the_mirror_follows(
    db_url: str, emulator: Any
) -> None:
    sync = SyncHarness(db_url, emulator)
    user = sync.add_user()
    ann = sync.add_contact(user, "ann@clientmail.io", first_name="Ann", stage="won")
    lost = sync.add_contact(user, "lou@clientmail.io", first_name="Lou", stage="lost")
    sync.drain()
    assert set(sync.members(user)) == {"ann@clientmail.io", "lou@clientmail.io"}
    sync.execute("ALTER TABLE contacts ADD COLUMN nickname text")
    sync.update_contact(ann, nickname="Annie")  # not synced yet: nothing queued
    assert sync.queue() == []

    changed = parse_mapping(
        """
[source]
filter = "stage IS DISTINCT FROM 'lost'"
[source.merge_fields]
FNAME = "nickname"
LNAME = "last_name"
PHONE = { column = "phone", type = "phone" }
"""
    )
    notices: list[str] = []
    assert apply_migrations(db_url, mapping=changed, notice=notices.append) == []
    assert any("the source mapping changed" in n and "2 contact(s) queued" in n for n in notices)
    # Queued: Ann for a resync, Lou (now outside the filter) for a delete.
    assert {(r["contact_id"], r["op"]) for r in sync.queue()} == {
        (ann, "resync"),
        (lost, "delete"),
    }
    sync.drain()
    members = sync.members(user)
    assert members["ann@clientmail.io"]["merge_fields"]["FNAME"] == "Annie"
    assert members["lou@clientmail.io"]["status"] == "archived"
    # The regenerated triggers watch the new column, and no longer the old one.
    sync.update_contact(ann, first_name="Ignored")
    assert sync.queue() == []
    sync.update_contact(ann, nickname="Nan")
    sync.drain()
    assert sync.members(user)["ann@clientmail.io"]["merge_fields"]["FNAME"] == "Nan"
    # Applying the same mapping again changes nothing and queues nothing.
    notices.clear()
    apply_migrations(db_url, mapping=changed, notice=notices.append)
    assert notices == [] and sync.queue() == []
    [(stored,)] = _rows(db_url, "SELECT mapping->>'filter' FROM mcsync.source_mapping")
    assert stored == "stage IS DISTINCT FROM 'lost'"
    assert CONTACTS.mapping == DEFAULT_MAPPING


def test_mcsync_migrate_reads_the_file_named_by_mcsync_config(
    empty_db_url: str, tmp_path: Any
) -> None:
    import os
    import subprocess
    import sys

    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(PEOPLE.encode())
    config = tmp_path / "mcsync.toml"
    env = {**os.environ, "DATABASE_URL": empty_db_url, "MCSYNC_CONFIG": str(config)}
    command = [sys.executable, "-m", "mcsync.cli", "migrate"]

    config.write_text(PEOPLE_OK.replace('"given_name"', '"first_name"'))
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 1
    assert "source.merge_fields.FNAME: column public.people.first_name does not exist" in run.stderr
    assert _rows(empty_db_url, "SELECT to_regnamespace('mcsync')") == [(None,)]

    config.write_text(PEOPLE_OK)
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    # insert, update, delete, truncate
    assert [t[1] for t in _triggers(empty_db_url)] == ["people"] * 4
