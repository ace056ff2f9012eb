"""What the source mapping generates: the view `mcsync.source_contacts`, the index, and the
triggers on the app's table (and on a tag join table), as SQL templates.

Every template is a `psycopg.sql.SQL` whose holes are filled only with quoted identifiers
(`sql.Identifier`, from names the mapping's model checked) and quoted literals
(`sql.Literal`: a merge tag, the table's name in a comment). The one exception is the
mapping's `filter`, an expression the operator wrote: it is checked to be one boolean
expression over the source table's columns (mcsync.source), under the same search_path the
view is built with and the triggers run with.

Nothing here resolves a name through the installer's search_path: catalog functions and types
are written `pg_catalog.`-qualified, mcsync's objects `<schema>.`-qualified, the trigger
functions run with `search_path = pg_catalog, pg_temp`, and `install` builds everything under
that same path (`SET LOCAL`). A role that can create objects in `public` cannot slip an
exact-signature overload (`public.jsonb_build_object(text, text)`, `public.format(text,
regclass)`) in front of the catalog's variadic functions (issue 17)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from mcsync.source import (
    MergeField,
    SourceMapping,
    TagsColumn,
    TagsTable,
    check_against_catalog,
    column_types,
)


def _name(qualified: str) -> sql.Identifier:
    """A checked `schema.table` as a quoted, two-part identifier."""
    return sql.Identifier(*qualified.split("."))


def _of(schema: str, name: str) -> sql.Identifier:
    return sql.Identifier(schema, name)


def _filter(mapping: SourceMapping) -> sql.Composable:
    if not mapping.filter:
        return sql.SQL("true")
    return sql.SQL("COALESCE(({}), false)").format(sql.SQL(mapping.filter))


def _text(column: sql.Composable) -> sql.Composable:
    return sql.SQL("{}::pg_catalog.text").format(column)


_TEXT_TYPES = ("text", "character varying")


def _value(merge_field: MergeField, column_type: str) -> sql.Composable:
    column = sql.Identifier("s", merge_field.column)
    textual = column_type in _TEXT_TYPES or column_type.startswith(("character", "varchar"))
    if merge_field.type in ("birthday", "date") and not textual:
        pattern = "MM/DD" if merge_field.type == "birthday" else "YYYY-MM-DD"
        return sql.SQL("pg_catalog.to_char({}::pg_catalog.date, {})").format(
            column, sql.Literal(pattern)
        )
    return _text(column)


_VIEW = """CREATE OR REPLACE VIEW {view} AS
SELECT s.{id} AS id, s.{tenant} AS user_id,
       s.{email}::pg_catalog.text AS email,
       pg_catalog.jsonb_build_object({fields}) AS merge_fields,
       {tags} AS tags
  FROM {table} s
 WHERE {filter};
COMMENT ON VIEW {view} IS {comment};
"""

# A tag row counts only where its tenant is the contact's: a coach who writes a tag row that
# names another coach's contact (their own row, so row level security lets it in) tags nobody.
_TAGS_FROM_TABLE = """ARRAY(SELECT t.{name}::pg_catalog.text FROM {tags} t
        WHERE t.{key} = s.{id} AND t.{tags_tenant} = s.{tenant} ORDER BY 1)"""


def view_sql(
    mapping: SourceMapping, column_types: dict[str, str] | None = None, schema: str = "mcsync"
) -> sql.Composed:
    """`<schema>.source_contacts`: the contacts inside the filter, in mcsync's shape."""
    types = column_types or {}
    fields = sql.SQL(", ").join(
        sql.SQL("{}, {}").format(sql.Literal(tag), _value(f, types.get(f.column, "text")))
        for tag, f in mapping.merge_fields.items()
    )
    tags: sql.Composable
    if isinstance(mapping.tags, TagsColumn):
        tags = sql.SQL("COALESCE(s.{}::pg_catalog.text[], '{{}}')").format(
            sql.Identifier(mapping.tags.column)
        )
    elif isinstance(mapping.tags, TagsTable):
        tags = sql.SQL(_TAGS_FROM_TABLE).format(
            name=sql.Identifier(mapping.tags.name),
            tags=_name(mapping.tags.table),
            key=sql.Identifier(mapping.tags.key),
            tags_tenant=sql.Identifier(mapping.tags.tenant),
            id=sql.Identifier(mapping.id),
            tenant=sql.Identifier(mapping.tenant),
        )
    else:
        tags = sql.SQL("'{}'::pg_catalog.text[]")
    return sql.SQL(_VIEW).format(
        view=_of(schema, "source_contacts"),
        id=sql.Identifier(mapping.id),
        tenant=sql.Identifier(mapping.tenant),
        email=sql.Identifier(mapping.email),
        fields=fields,
        tags=tags,
        table=_name(mapping.table),
        filter=_filter(mapping),
        comment=sql.Literal(
            f"mcsync: the contacts of {mapping.table} as mcsync syncs them"
            " (generated from the mapping)"
        ),
    )


# The triggers' bodies are dollar-quoted with a tag the mapping's names cannot contain
# (identifiers hold no '$'; the filter is refused one: mcsync.source).
_HEAD = """RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $mcsync$"""

# A transition table with `mcsync_in` (inside the filter), so the filter's unqualified column
# names are read from that table only.
_NEW = "(SELECT *, {filter} AS mcsync_in FROM mcsync_new_rows)"
_OLD = "(SELECT *, {filter} AS mcsync_in FROM mcsync_old_rows)"
_NOTIFY = """IF FOUND THEN
        PERFORM pg_catalog.pg_notify('mcsync', '');
    END IF;"""

_CONTACT_FUNCTIONS = f"""
CREATE OR REPLACE FUNCTION {{schema}}.mcsync_enqueue_inserted() {_HEAD}
BEGIN
    -- An import: one row per user holding the ids (see mailchimp_sync_bulk). New rows can't
    -- have pending events yet, so nothing is lost by not coalescing them here.
    IF EXISTS (SELECT 1 FROM mcsync_new_rows OFFSET 999) THEN
        INSERT INTO {{schema}}.mailchimp_sync_bulk (user_id, contact_ids)
        SELECT n.{{t}}, pg_catalog.array_agg(n.{{i}})
          FROM {_NEW} n
          JOIN {{schema}}.mailchimp_connections c ON c.user_id = n.{{t}}
         WHERE n.mcsync_in
         GROUP BY n.{{t}};
        {_NOTIFY}
        RETURN NULL;
    END IF;
    INSERT INTO {{schema}}.mailchimp_sync_queue AS q (user_id, contact_id, op, email)
    SELECT n.{{t}}, n.{{i}}, 'upsert', NULL
      FROM {_NEW} n
      JOIN {{schema}}.mailchimp_connections c ON c.user_id = n.{{t}}
     WHERE n.mcsync_in
    ON CONFLICT (user_id, contact_id) DO UPDATE
       SET op = 'upsert', version = q.version + 1, changed_at = pg_catalog.now();
    {_NOTIFY}
    RETURN NULL;
END $mcsync$;

CREATE OR REPLACE FUNCTION {{schema}}.mcsync_enqueue_updated() {_HEAD}
DECLARE
    queued boolean := false;
BEGIN
    -- Contacts whose synced columns changed, that moved to this user or into the filter.
    INSERT INTO {{schema}}.mailchimp_sync_queue AS q (user_id, contact_id, op, email)
    SELECT n.{{t}}, n.{{i}}, 'upsert', CASE WHEN o.{{t}} = n.{{t}} AND o.mcsync_in THEN o.{{e}} END
      FROM {_NEW} n
      JOIN {_OLD} o ON o.{{i}} = n.{{i}}
      JOIN {{schema}}.mailchimp_connections c ON c.user_id = n.{{t}}
     WHERE n.mcsync_in
       AND (NOT o.mcsync_in OR ({{new_synced}}) IS DISTINCT FROM ({{old_synced}}))
    ON CONFLICT (user_id, contact_id) DO UPDATE
       SET op = 'upsert', version = q.version + 1, changed_at = pg_catalog.now(),
           email = COALESCE(q.email, excluded.email);
    queued := FOUND;

    -- A contact moved to another user, or out of the filter, is gone from its old audience.
    INSERT INTO {{schema}}.mailchimp_sync_queue AS q (user_id, contact_id, op, email)
    SELECT o.{{t}}, o.{{i}}, 'delete', o.{{e}}
      FROM {_OLD} o
      JOIN {_NEW} n ON n.{{i}} = o.{{i}}
      JOIN {{schema}}.mailchimp_connections c ON c.user_id = o.{{t}}
     WHERE o.mcsync_in AND (n.{{t}} IS DISTINCT FROM o.{{t}} OR NOT n.mcsync_in)
    ON CONFLICT (user_id, contact_id) DO UPDATE
       SET op = 'delete', version = q.version + 1, changed_at = pg_catalog.now(),
           email = COALESCE(q.email, excluded.email);
    queued := queued OR FOUND;

    IF queued THEN
        PERFORM pg_catalog.pg_notify('mcsync', '');
    END IF;
    RETURN NULL;
END $mcsync$;

CREATE OR REPLACE FUNCTION {{schema}}.mcsync_enqueue_deleted() {_HEAD}
BEGIN
    INSERT INTO {{schema}}.mailchimp_sync_queue AS q (user_id, contact_id, op, email)
    SELECT o.{{t}}, o.{{i}}, 'delete', o.{{e}}
      FROM {_OLD} o
      JOIN {{schema}}.mailchimp_connections c ON c.user_id = o.{{t}}
     WHERE o.mcsync_in
    ON CONFLICT (user_id, contact_id) DO UPDATE
       SET op = 'delete', version = q.version + 1, changed_at = pg_catalog.now(),
           email = COALESCE(q.email, excluded.email);
    {_NOTIFY}
    RETURN NULL;
END $mcsync$;

-- TRUNCATE fires no row trigger and has no transition table: every linked contact of every
-- connected user has vanished, so each is queued as a delete. The worker archives the members
-- mcsync owns (its ledger says which) and leaves members from elsewhere untouched, as for a
-- DELETE; without this, TRUNCATE left every member mcsync created subscribed, an orphan.
CREATE OR REPLACE FUNCTION {{schema}}.mcsync_enqueue_truncated() {_HEAD}
BEGIN
    INSERT INTO {{schema}}.mailchimp_sync_queue AS q (user_id, contact_id, op, email)
    SELECT l.user_id, l.contact_id, 'delete', m.email
      FROM {{schema}}.mailchimp_contact_links l
      JOIN {{schema}}.mailchimp_connections c
        ON c.user_id = l.user_id AND c.audience_id = l.audience_id
      LEFT JOIN {{schema}}.mailchimp_members m
             ON m.user_id = l.user_id AND m.audience_id = l.audience_id
            AND m.email_hash = l.email_hash
    ON CONFLICT (user_id, contact_id) DO UPDATE
       SET op = 'delete', version = q.version + 1, changed_at = pg_catalog.now(),
           next_retry_at = pg_catalog.now(), attempts = 0,
           email = COALESCE(q.email, excluded.email);
    {_NOTIFY}
    RETURN NULL;
END $mcsync$;
"""

# A change to the tag join table is a change of the contacts it names, and only of a contact
# whose tenant is the tag row's (see _TAGS_FROM_TABLE).
_TAG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION {{schema}}.mcsync_enqueue_tags_changed() {_HEAD}
DECLARE
    ids uuid[];
    tenants uuid[];
BEGIN
    -- The (contact, tenant) pairs the statement touched. Each branch names only the
    -- transition tables its event has.
    IF TG_OP = 'INSERT' THEN
        SELECT pg_catalog.array_agg(r.{{k}}), pg_catalog.array_agg(r.{{tt}}) INTO ids, tenants
          FROM (SELECT DISTINCT {{k}}, {{tt}} FROM mcsync_new_rows) r;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT pg_catalog.array_agg(r.{{k}}), pg_catalog.array_agg(r.{{tt}}) INTO ids, tenants
          FROM (SELECT DISTINCT {{k}}, {{tt}} FROM mcsync_old_rows) r;
    ELSE
        SELECT pg_catalog.array_agg(r.{{k}}), pg_catalog.array_agg(r.{{tt}}) INTO ids, tenants
          FROM (SELECT {{k}}, {{tt}} FROM mcsync_new_rows
                UNION SELECT {{k}}, {{tt}} FROM mcsync_old_rows) r;
    END IF;
    INSERT INTO {{schema}}.mailchimp_sync_queue AS q (user_id, contact_id, op, email)
    SELECT s.{{t}}, s.{{i}}, 'upsert', NULL
      FROM (SELECT * FROM {{source}} WHERE {{filter}}) s
      JOIN {{schema}}.mailchimp_connections c ON c.user_id = s.{{t}}
      JOIN ROWS FROM (pg_catalog.unnest(ids), pg_catalog.unnest(tenants))
           AS o (contact_id, tenant_id)
        ON o.contact_id = s.{{i}} AND o.tenant_id = s.{{t}}
    ON CONFLICT (user_id, contact_id) DO UPDATE
       SET op = 'upsert', version = q.version + 1, changed_at = pg_catalog.now();
    {_NOTIFY}
    RETURN NULL;
END $mcsync$;
"""

# Per event: the past-tense suffix of its trigger's name, and the transition tables it has.
_EVENTS = {
    "INSERT": ("inserted", "REFERENCING NEW TABLE AS mcsync_new_rows"),
    "UPDATE": ("updated", "REFERENCING OLD TABLE AS mcsync_old_rows NEW TABLE AS mcsync_new_rows"),
    "DELETE": ("deleted", "REFERENCING OLD TABLE AS mcsync_old_rows"),
    # TRUNCATE has no transition table.
    "TRUNCATE": ("truncated", ""),
}
_TRIGGER = """
CREATE TRIGGER {trigger}
    AFTER {event} ON {table} {transitions}
    FOR EACH STATEMENT EXECUTE FUNCTION {function}();
"""


def _statement_triggers(
    table: sql.Composable, prefix: str, functions: dict[str, sql.Composable]
) -> sql.Composed:
    """One statement-level AFTER trigger per event (`functions`: event -> trigger function)."""
    parts = []
    for event, function in functions.items():
        suffix, transitions = _EVENTS[event]
        parts.append(
            sql.SQL(_TRIGGER).format(
                trigger=sql.Identifier(f"{prefix}_{suffix}"),
                event=sql.SQL(event),
                table=table,
                transitions=sql.SQL(transitions),
                function=function,
            )
        )
    return sql.Composed(parts)


def triggers_sql(mapping: SourceMapping, schema: str = "mcsync") -> sql.Composed:
    """The trigger functions and the statement-level triggers, from the mapping.

    SECURITY DEFINER with the search_path frozen to the catalog: the app's roles need no grant
    on mcsync's tables, and a caller cannot redirect the functions to other tables. They fire
    only for users with a connection, and the update trigger only when a synced column (or the
    filter's answer) changed."""
    filter_ = _filter(mapping)
    synced = mapping.synced_columns
    parts = [
        sql.SQL(_CONTACT_FUNCTIONS).format(
            schema=sql.Identifier(schema),
            i=sql.Identifier(mapping.id),
            t=sql.Identifier(mapping.tenant),
            e=sql.Identifier(mapping.email),
            filter=filter_,
            new_synced=sql.SQL(", ").join(sql.Identifier("n", c) for c in synced),
            old_synced=sql.SQL(", ").join(sql.Identifier("o", c) for c in synced),
        ),
        _statement_triggers(
            _name(mapping.table),
            "mcsync_contacts",
            {
                event: _of(schema, f"mcsync_enqueue_{suffix}")
                for event, (suffix, _) in _EVENTS.items()
            },
        ),
    ]
    if isinstance(mapping.tags, TagsTable):
        tags = mapping.tags
        parts.append(
            sql.SQL(_TAG_FUNCTION).format(
                schema=sql.Identifier(schema),
                k=sql.Identifier(tags.key),
                tt=sql.Identifier(tags.tenant),
                source=_name(mapping.table),
                i=sql.Identifier(mapping.id),
                t=sql.Identifier(mapping.tenant),
                filter=filter_,
            )
        )
        function = _of(schema, "mcsync_enqueue_tags_changed")
        parts.append(
            _statement_triggers(
                _name(tags.table), "mcsync_contact_tags", dict.fromkeys(_EVENTS, function)
            )
        )
    return sql.Composed(parts)


_EMAIL_INDEX = """CREATE INDEX IF NOT EXISTS {index} ON {table}
    ({tenant}, {schema}.mcsync_email_key({email}::pg_catalog.text));
"""


def email_index_sql(mapping: SourceMapping, schema: str = "mcsync") -> sql.Composed:
    """Lets the worker find every contact that shares an address without scanning the user."""
    return sql.SQL(_EMAIL_INDEX).format(
        index=sql.Identifier(f"{mapping.table.split('.')[1]}_mcsync_email_idx"),
        table=_name(mapping.table),
        tenant=sql.Identifier(mapping.tenant),
        schema=sql.Identifier(schema),
        email=sql.Identifier(mapping.email),
    )


# Every trigger whose function is mcsync's, wherever it is (on the table an earlier mapping
# named, or 002's on `contacts`): what a regeneration replaces.
_PREPARE = """
DO $mcsync$
DECLARE
    item record;
BEGIN
    FOR item IN
        SELECT t.tgname, t.tgrelid::pg_catalog.regclass AS target
          FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
         WHERE p.pronamespace = {schema_name}::pg_catalog.regnamespace AND NOT t.tgisinternal
    LOOP
        EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s'::pg_catalog.text,
                                  item.tgname, item.target);
    END LOOP;
END $mcsync$;
"""


def generated_sql(
    mapping: SourceMapping, column_types: dict[str, str] | None = None, schema: str = "mcsync"
) -> sql.Composed:
    """Everything the mapping generates: mcsync's old triggers dropped, then the index, the view
    and the triggers. (Without `column_types`, BIRTHDAY and DATE columns are taken to be dates.)
    Every name is qualified; run it under the pinned search_path all the same (`install` does,
    install_store.pin_search_path, and `mcsync sql` says so first)."""
    return sql.Composed(
        [
            sql.SQL(_PREPARE).format(
                schema=sql.Identifier(schema), schema_name=sql.Literal(schema)
            ),
            email_index_sql(mapping, schema),
            view_sql(mapping, column_types, schema),
            triggers_sql(mapping, schema),
        ]
    )


def generated_text(
    mapping: SourceMapping, column_types: dict[str, str] | None = None, schema: str = "mcsync"
) -> str:
    """`generated_sql` as text (for `mcsync sql`)."""
    return generated_sql(mapping, column_types, schema).as_string(None)


@dataclass(frozen=True)
class Installed:
    """What `install` did: the mapping's warnings, and whether it changed (and so how many
    contacts were queued for the reconciliation that follows a change)."""

    warnings: list[str]
    changed: bool
    queued: int


def install(
    conn: psycopg.Connection[Any], mapping: SourceMapping, schema: str = "mcsync"
) -> Installed:
    """Check the mapping, then (re)generate the view, index and triggers, record the mapping
    and, when it differs from the one installed before, queue every connected user's contacts
    for a full reconciliation. Runs in the caller's transaction (the migrations'), under the
    pinned search_path for the rest of it: the filter is checked, and the view built, with the
    same one."""
    from mcsync import install_store as store

    store.pin_search_path(conn)
    warnings = check_against_catalog(conn, mapping)
    types = column_types(conn, mapping.table)
    previous = store.installed_mapping_fingerprint(conn, schema)
    conn.execute(generated_sql(mapping, types, schema))
    store.lock_down(conn, schema)
    store.record_source_mapping(
        conn, json.dumps(mapping.model_dump(mode="json")), mapping.fingerprint, schema
    )
    changed = previous is not None and previous != mapping.fingerprint
    queued = 0
    if changed:
        from mcsync.connections import queue_full_sync_all

        queued = queue_full_sync_all(conn)
    return Installed(warnings, changed, queued)
