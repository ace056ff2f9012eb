"""The source mapping: which table of the app holds its contacts, and which columns mcsync syncs.

One home for everything that names the app's columns. mcsync reads its mapping from a TOML file
(`MCSYNC_CONFIG`, e.g. `mcsync.toml`); without one, the built-in default is the schema mcsync
started with (`public.contacts`: id, user_id, email, first_name/last_name/phone as
FNAME/LNAME/PHONE, tags text[]). See docs/mapping.md for the format.

`mcsync migrate` checks the mapping against the catalog (`check_against_catalog`) and installs
what it generates (`install`), in the migrations' transaction:

- the view `mcsync.source_contacts (id, user_id, email, merge_fields jsonb, tags text[])`: the
  contacts as mcsync sees them, only the rows inside the mapping's filter. The worker, Sync Now,
  `verify` and the demo read contacts only through it, so no statement elsewhere names a column
  of the app (and the worker's and web's roles need no grant on the app's table);
- the statement-level triggers on the source table (and on a tag join table) that queue changes.

Everything generated is written for the `mcsync` schema and rendered (mcsync.schema.render) for
another, like the migrations."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import psycopg
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

CONFIG_ENV = "MCSYNC_CONFIG"
VIEW = "mcsync.source_contacts"

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
# Mailchimp's merge tags: upper-case letters, digits and underscores, at most 10 characters.
# (Mailchimp Marketing API, "Add merge field": `tag` is "The merge tag ... e.g. FNAME"; the
# 10-character limit is the audience settings form's.)
_MERGE_TAG = re.compile(r"^[A-Z][A-Z0-9_]{0,9}$")

MergeType = Literal["text", "phone", "birthday", "date", "number"]


class MappingError(ValueError):
    """The mapping is not usable; the message names the key (and the column) at fault."""


def _identifier(value: str) -> str:
    if not _IDENTIFIER.match(value):
        raise ValueError(f"{value!r} is not a plain identifier (letters, digits, _ and $)")
    return value


def _qualified(value: str) -> str:
    parts = value.split(".")
    if len(parts) != 2:
        raise ValueError(f"{value!r} must be schema-qualified, e.g. public.contacts")
    for part in parts:
        _identifier(part)
    return value


Identifier = Annotated[str, AfterValidator(_identifier)]
QualifiedName = Annotated[str, AfterValidator(_qualified)]


def quote(name: str) -> str:
    """A checked identifier (or schema.name) as SQL, double-quoted part by part."""
    return ".".join(f'"{part}"' for part in name.split("."))


class MergeField(BaseModel):
    """One Mailchimp merge field, filled from one column."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    column: Identifier
    type: MergeType = "text"


class TagsColumn(BaseModel):
    """Tags from a `text[]` column of the source table."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    column: Identifier


class TagsTable(BaseModel):
    """Tags from a join table: one row per (contact, tag name)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    table: QualifiedName
    key: Identifier = Field(description="the column holding the contact's id")
    name: Identifier = Field(description="the column holding the tag's name")


def _default_merge_fields() -> dict[str, MergeField]:
    return {
        "FNAME": MergeField(column="first_name"),
        "LNAME": MergeField(column="last_name"),
        "PHONE": MergeField(column="phone", type="phone"),
    }


class SourceMapping(BaseModel):
    """The `[source]` section of mcsync.toml. Every key has today's schema as its default."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    table: QualifiedName = "public.contacts"
    id: Identifier = "id"
    tenant: Identifier = "user_id"
    email: Identifier = "email"
    merge_fields: dict[str, MergeField] = Field(default_factory=_default_merge_fields)
    tags: TagsColumn | TagsTable | None = TagsColumn(column="tags")
    filter: str | None = None

    @field_validator("merge_fields", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        # `FNAME = "given_name"` is short for `FNAME = { column = "given_name" }`.
        if isinstance(value, dict):
            return {k: {"column": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("merge_fields")
    @classmethod
    def _tags_are_mailchimps(cls, value: dict[str, MergeField]) -> dict[str, MergeField]:
        for tag in value:
            if not _MERGE_TAG.match(tag):
                raise ValueError(
                    f"{tag!r} is not a Mailchimp merge tag (A-Z, 0-9, _; at most 10 characters)"
                )
        return value

    @field_validator("tags", mode="before")
    @classmethod
    def _no_tags(cls, value: Any) -> Any:
        return None if value is False else value

    @field_validator("filter")
    @classmethod
    def _one_expression(cls, value: str | None) -> str | None:
        # It is written into generated SQL (a view, and trigger bodies quoted with $$): one
        # expression only. Anything else that slips through fails the catalog check.
        if value is not None and (not value.strip() or ";" in value or "$$" in value):
            raise ValueError("must be one SQL boolean expression (no ';', no '$$')")
        return value.strip() if value else None

    @property
    def fingerprint(self) -> str:
        """What identifies this mapping: a change of it regenerates and reconciles."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]

    @property
    def synced_columns(self) -> list[str]:
        """The source table's columns whose change is a change of the contact."""
        columns = [self.tenant, self.email, *(f.column for f in self.merge_fields.values())]
        if isinstance(self.tags, TagsColumn):
            columns.append(self.tags.column)
        return list(dict.fromkeys(columns))


DEFAULT_MAPPING = SourceMapping()


def _key_path(loc: tuple[int | str, ...]) -> str:
    parts = ["source"]
    for item in loc:
        if isinstance(item, int) or item in ("TagsColumn", "TagsTable"):
            continue
        parts.append(str(item))
    return ".".join(parts)


def parse_mapping(text: str, *, origin: str = "mcsync.toml") -> SourceMapping:
    """The mapping in TOML text (its `[source]` table); a MappingError names the key at fault."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"{origin}: not valid TOML: {exc}") from exc
    unknown = set(document) - {"source"}
    if unknown:
        raise MappingError(f"{origin}: unknown section(s) {sorted(unknown)}; expected [source]")
    try:
        return SourceMapping.model_validate(document.get("source", {}))
    except ValidationError as exc:
        problems = [f"{_key_path(e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise MappingError(f"{origin}: " + "; ".join(dict.fromkeys(problems))) from exc


def load_mapping(path: str | Path | None = None) -> SourceMapping:
    """The mapping at `path`, else at MCSYNC_CONFIG, else the built-in default."""
    chosen = str(path) if path else os.environ.get(CONFIG_ENV, "").strip()
    if not chosen:
        return DEFAULT_MAPPING
    try:
        text = Path(chosen).read_text()
    except OSError as exc:
        raise MappingError(f"{CONFIG_ENV}={chosen}: cannot read it ({exc.strerror})") from exc
    return parse_mapping(text, origin=chosen)


# --- checking against the catalog ------------------------------------------------------------

# pg_type.typcategory: S string, D date/time, N numeric, A array, U user (uuid is 'U').
_FITS: dict[MergeType, tuple[str, ...]] = {
    "text": ("S",),
    "phone": ("S",),
    "birthday": ("D", "S"),
    "date": ("D", "S"),
    "number": ("N", "S"),
}
_FITS_SAID = {
    "text": "a text column",
    "phone": "a text column",
    "birthday": "a date (or text already in MM/DD form)",
    "date": "a date (or text already in YYYY-MM-DD form)",
    "number": "a numeric column (or text)",
}


@dataclass(frozen=True)
class _Column:
    type: str
    category: str
    element_category: str | None


def _columns(conn: psycopg.Connection[Any], table: str) -> dict[str, _Column] | None:
    schema, name = table.split(".")
    rows = conn.execute(
        """SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typcategory::text,
                  e.typcategory::text
             FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             JOIN pg_type t ON t.oid = a.atttypid
             LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
            WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')""",
        (schema, name),
    ).fetchall()
    if not rows:
        exists = conn.execute(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')",
            (schema, name),
        ).fetchone()
        return {} if exists else None
    return {r[0]: _Column(r[1], r[2], r[3]) for r in rows}


def _leads_an_index(conn: psycopg.Connection[Any], table: str, column: str) -> bool:
    schema, name = table.split(".")
    row = conn.execute(
        """SELECT 1 FROM pg_index i
             JOIN pg_class c ON c.oid = i.indrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
            WHERE n.nspname = %s AND c.relname = %s AND a.attname = %s""",
        (schema, name, column),
    ).fetchone()
    return row is not None


def check_against_catalog(conn: psycopg.Connection[Any], mapping: SourceMapping) -> list[str]:
    """Raise a MappingError listing every mistake (key, column, what was found); return the
    warnings (a missing index, with the CREATE INDEX that fixes it). Changes nothing."""
    errors: list[str] = []
    warnings: list[str] = []
    columns = _columns(conn, mapping.table)
    if columns is None:
        schema, table_name = mapping.table.split(".")
        raise MappingError(
            f'source.table: the app\'s "{table_name}" table was not found in schema {schema}'
            " (create it, or name the contacts table in the mapping: docs/mapping.md)"
        )

    def need(
        key: str,
        column: str,
        categories: tuple[str, ...],
        said: str,
        table: str = mapping.table,
        table_columns: dict[str, _Column] = columns,
    ) -> _Column | None:
        found = table_columns.get(column)
        if found is None:
            errors.append(f"{key}: column {table}.{column} does not exist")
        elif found.category not in categories and found.type not in categories:
            errors.append(f"{key}: column {table}.{column} is {found.type}; need {said}")
        return found

    need("source.id", mapping.id, ("uuid",), "uuid")
    need("source.tenant", mapping.tenant, ("uuid",), "uuid")
    need("source.email", mapping.email, ("S",), "a text column")
    for tag, merge_field in mapping.merge_fields.items():
        need(
            f"source.merge_fields.{tag}",
            merge_field.column,
            _FITS[merge_field.type],
            _FITS_SAID[merge_field.type],
        )
    if isinstance(mapping.tags, TagsColumn):
        found = need("source.tags.column", mapping.tags.column, ("A",), "text[]")
        if found is not None and found.category == "A" and found.element_category != "S":
            errors.append(
                f"source.tags.column: column {mapping.table}.{mapping.tags.column} is "
                f"{found.type}; need text[]"
            )
    elif isinstance(mapping.tags, TagsTable):
        tags = mapping.tags
        join = _columns(conn, mapping.tags.table)
        if join is None:
            errors.append(f"source.tags.table: table {mapping.tags.table} does not exist")
        else:
            key_said = "uuid (the contact's id)"
            key = need("source.tags.key", tags.key, ("uuid",), key_said, tags.table, join)
            need("source.tags.name", tags.name, ("S",), "a text column", tags.table, join)
            if key is not None and not _leads_an_index(conn, tags.table, tags.key):
                warnings.append(_index_warning("source.tags.key", tags.table, tags.key))
    from mcsync.source_keys import key_problems  # what mcsync relies on: ids, tenants

    if not errors:  # columns of the right types: are they keys mcsync can rely on?
        errors.extend(key_problems(conn, mapping))
    if mapping.filter is not None and not errors:
        problem = _filter_problem(conn, mapping)
        if problem:
            errors.append(f"source.filter: {problem}")
    if errors:
        said = "\n  ".join(errors)
        raise MappingError(f"the source mapping does not fit the database:\n  {said}")
    for said_key, column in (("source.tenant", mapping.tenant), ("source.id", mapping.id)):
        if not _leads_an_index(conn, mapping.table, column):
            warnings.append(_index_warning(said_key, mapping.table, column))
    return warnings


def _index_warning(key: str, table: str, column: str) -> str:
    index = f"{table.split('.')[1]}_{column}_idx"
    return (
        f"{key}: no index starts with {table}.{column}; mcsync looks contacts up by it. "
        f"Create one: CREATE INDEX {quote(index)} ON {quote(table)} ({quote(column)});"
    )


def _filter_problem(conn: psycopg.Connection[Any], mapping: SourceMapping) -> str | None:
    """Why the filter is not a boolean expression over the source table's columns (evaluated
    with the triggers' search_path), or None."""
    try:
        with conn.transaction():
            conn.execute("SET LOCAL search_path = pg_catalog, pg_temp")
            cur = conn.execute(
                f"SELECT ({mapping.filter}) FROM {quote(mapping.table)} LIMIT 0".encode(),
                prepare=False,
            )
            kind = cur.description[0].type_code if cur.description else None
            if kind != 16:  # bool
                return f"{mapping.filter!r} is not a boolean expression"
            raise _Rollback
    except _Rollback:
        return None
    except psycopg.Error as exc:
        return f"{mapping.filter!r}: {exc.diag.message_primary or exc}"


class _Rollback(Exception):
    """Leaves the check's savepoint without keeping its SET LOCAL."""


# --- what is generated -------------------------------------------------------------------------


def _value(mapping: SourceMapping, merge_field: MergeField, alias: str, column_type: str) -> str:
    column = f"{alias}.{quote(merge_field.column)}"
    if merge_field.type in ("birthday", "date"):
        if column_type in ("text", "character varying") or column_type.startswith(
            ("character", "varchar")
        ):
            return f"{column}::text"
        pattern = "MM/DD" if merge_field.type == "birthday" else "YYYY-MM-DD"
        return f"to_char({column}::date, '{pattern}')"
    return f"{column}::text"


def _filter(mapping: SourceMapping) -> str:
    return f"coalesce(({mapping.filter}), false)" if mapping.filter else "true"


def view_sql(mapping: SourceMapping, column_types: dict[str, str] | None = None) -> str:
    """`mcsync.source_contacts`: the contacts inside the filter, in mcsync's shape."""
    types = column_types or {}
    fields = ", ".join(
        f"'{tag}', {_value(mapping, f, 's', types.get(f.column, 'text'))}"
        for tag, f in mapping.merge_fields.items()
    )
    if isinstance(mapping.tags, TagsColumn):
        tags = f"coalesce(s.{quote(mapping.tags.column)}::text[], '{{}}')"
    elif isinstance(mapping.tags, TagsTable):
        tags = (
            f"ARRAY(SELECT t.{quote(mapping.tags.name)}::text FROM {quote(mapping.tags.table)} t"
            f" WHERE t.{quote(mapping.tags.key)} = s.{quote(mapping.id)}"
            f" ORDER BY t.{quote(mapping.tags.name)})"
        )
    else:
        tags = "'{}'::text[]"
    return f"""CREATE OR REPLACE VIEW {VIEW} AS
SELECT s.{quote(mapping.id)} AS id, s.{quote(mapping.tenant)} AS user_id,
       s.{quote(mapping.email)}::text AS email,
       jsonb_build_object({fields}) AS merge_fields,
       {tags} AS tags
  FROM {quote(mapping.table)} s
 WHERE {_filter(mapping)};
COMMENT ON VIEW {VIEW} IS
    'mcsync: the contacts of {mapping.table} as mcsync syncs them (generated from the mapping)';
"""


def _rows(mapping: SourceMapping, transition: str) -> str:
    """A transition table with `mcsync_in` (inside the filter), so the filter's unqualified
    column names are read from that table only."""
    return f"(SELECT *, {_filter(mapping)} AS mcsync_in FROM {transition})"


_HEAD = "RETURNS trigger\nLANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp"


# Per event: the past-tense suffix of its trigger's name, and the transition tables it has.
_EVENTS = {
    "INSERT": ("inserted", "NEW TABLE AS mcsync_new_rows"),
    "UPDATE": ("updated", "OLD TABLE AS mcsync_old_rows NEW TABLE AS mcsync_new_rows"),
    "DELETE": ("deleted", "OLD TABLE AS mcsync_old_rows"),
    # TRUNCATE has no transition table.
    "TRUNCATE": ("truncated", ""),
}


def _statement_triggers(table: str, prefix: str, functions: dict[str, str]) -> str:
    """One statement-level AFTER trigger per event (`functions`: event -> trigger function)."""
    out = ""
    for event, function in functions.items():
        suffix, transitions = _EVENTS[event]
        out += f"""
CREATE TRIGGER {prefix}_{suffix}
    AFTER {event} ON {table}{" REFERENCING " + transitions if transitions else ""}
    FOR EACH STATEMENT EXECUTE FUNCTION {function}();
"""
    return out


def triggers_sql(mapping: SourceMapping) -> str:
    """The trigger functions and the statement-level triggers, from the mapping.

    SECURITY DEFINER with the search_path frozen to the catalog: the app's roles need no grant
    on mcsync's tables, and a caller cannot redirect the functions to other tables. They fire
    only for users with a connection, and the update trigger only when a synced column (or the
    filter's answer) changed."""
    table, i, t, e = (
        quote(mapping.table),
        quote(mapping.id),
        quote(mapping.tenant),
        quote(mapping.email),
    )
    synced = [quote(c) for c in mapping.synced_columns]
    new_synced = ", ".join(f"n.{c}" for c in synced)
    old_synced = ", ".join(f"o.{c}" for c in synced)
    head = _HEAD
    notify = "IF FOUND THEN\n        PERFORM pg_notify('mcsync', '');\n    END IF;"
    out = f"""
CREATE OR REPLACE FUNCTION mcsync.mcsync_enqueue_inserted() {head} AS $$
BEGIN
    -- An import: one row per user holding the ids (see mailchimp_sync_bulk). New rows can't
    -- have pending events yet, so nothing is lost by not coalescing them here.
    IF EXISTS (SELECT 1 FROM mcsync_new_rows OFFSET 999) THEN
        INSERT INTO mcsync.mailchimp_sync_bulk (user_id, contact_ids)
        SELECT n.{t}, array_agg(n.{i})
          FROM {_rows(mapping, "mcsync_new_rows")} n
          JOIN mcsync.mailchimp_connections c ON c.user_id = n.{t}
         WHERE n.mcsync_in
         GROUP BY n.{t};
        {notify}
        RETURN NULL;
    END IF;
    INSERT INTO mcsync.mailchimp_sync_queue AS q (user_id, contact_id, op, email)
    SELECT n.{t}, n.{i}, 'upsert', NULL
      FROM {_rows(mapping, "mcsync_new_rows")} n
      JOIN mcsync.mailchimp_connections c ON c.user_id = n.{t}
     WHERE n.mcsync_in
    ON CONFLICT (user_id, contact_id) DO UPDATE
       SET op = 'upsert', version = q.version + 1, changed_at = now();
    {notify}
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION mcsync.mcsync_enqueue_updated() {head} AS $$
DECLARE
    queued boolean := false;
BEGIN
    -- Contacts whose synced columns changed, that moved to this user or into the filter.
    INSERT INTO mcsync.mailchimp_sync_queue AS q (user_id, contact_id, op, email)
    SELECT n.{t}, n.{i}, 'upsert', CASE WHEN o.{t} = n.{t} AND o.mcsync_in THEN o.{e} END
      FROM {_rows(mapping, "mcsync_new_rows")} n
      JOIN {_rows(mapping, "mcsync_old_rows")} o ON o.{i} = n.{i}
      JOIN mcsync.mailchimp_connections c ON c.user_id = n.{t}
     WHERE n.mcsync_in
       AND (NOT o.mcsync_in OR ({new_synced}) IS DISTINCT FROM ({old_synced}))
    ON CONFLICT (user_id, contact_id) DO UPDATE
       SET op = 'upsert', version = q.version + 1, changed_at = now(),
           email = coalesce(q.email, excluded.email);
    queued := FOUND;

    -- A contact moved to another user, or out of the filter, is gone from its old audience.
    INSERT INTO mcsync.mailchimp_sync_queue AS q (user_id, contact_id, op, email)
    SELECT o.{t}, o.{i}, 'delete', o.{e}
      FROM {_rows(mapping, "mcsync_old_rows")} o
      JOIN {_rows(mapping, "mcsync_new_rows")} n ON n.{i} = o.{i}
      JOIN mcsync.mailchimp_connections c ON c.user_id = o.{t}
     WHERE o.mcsync_in AND (n.{t} IS DISTINCT FROM o.{t} OR NOT n.mcsync_in)
    ON CONFLICT (user_id, contact_id) DO UPDATE
       SET op = 'delete', version = q.version + 1, changed_at = now(),
           email = coalesce(q.email, excluded.email);
    queued := queued OR FOUND;

    IF queued THEN
        PERFORM pg_notify('mcsync', '');
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION mcsync.mcsync_enqueue_deleted() {head} AS $$
BEGIN
    INSERT INTO mcsync.mailchimp_sync_queue AS q (user_id, contact_id, op, email)
    SELECT o.{t}, o.{i}, 'delete', o.{e}
      FROM {_rows(mapping, "mcsync_old_rows")} o
      JOIN mcsync.mailchimp_connections c ON c.user_id = o.{t}
     WHERE o.mcsync_in
    ON CONFLICT (user_id, contact_id) DO UPDATE
       SET op = 'delete', version = q.version + 1, changed_at = now(),
           email = coalesce(q.email, excluded.email);
    {notify}
    RETURN NULL;
END $$;

-- TRUNCATE fires no row trigger and has no transition table: every linked contact of every
-- connected user has vanished, so each is queued as a delete. The worker archives the members
-- mcsync owns (its ledger says which) and leaves members from elsewhere untouched, as for a
-- DELETE; without this, TRUNCATE left every member mcsync created subscribed, an orphan.
CREATE OR REPLACE FUNCTION mcsync.mcsync_enqueue_truncated() {head} AS $$
BEGIN
    INSERT INTO mcsync.mailchimp_sync_queue AS q (user_id, contact_id, op, email)
    SELECT l.user_id, l.contact_id, 'delete', m.email
      FROM mcsync.mailchimp_contact_links l
      JOIN mcsync.mailchimp_connections c
        ON c.user_id = l.user_id AND c.audience_id = l.audience_id
      LEFT JOIN mcsync.mailchimp_members m
             ON m.user_id = l.user_id AND m.audience_id = l.audience_id
            AND m.email_hash = l.email_hash
    ON CONFLICT (user_id, contact_id) DO UPDATE
       SET op = 'delete', version = q.version + 1, changed_at = now(), next_retry_at = now(),
           attempts = 0, email = coalesce(q.email, excluded.email);
    {notify}
    RETURN NULL;
END $$;
"""
    out += _statement_triggers(
        table,
        "mcsync_contacts",
        {
            "INSERT": "mcsync.mcsync_enqueue_inserted",
            "UPDATE": "mcsync.mcsync_enqueue_updated",
            "DELETE": "mcsync.mcsync_enqueue_deleted",
            "TRUNCATE": "mcsync.mcsync_enqueue_truncated",
        },
    )
    if isinstance(mapping.tags, TagsTable):
        out += _tag_table_triggers(mapping, mapping.tags)
    return out


def _tag_table_triggers(mapping: SourceMapping, tags: TagsTable) -> str:
    """A change to the tag join table is a change of the contacts it names."""
    k, table = quote(tags.key), quote(tags.table)
    source, i, t = quote(mapping.table), quote(mapping.id), quote(mapping.tenant)
    head = _HEAD
    return f"""
CREATE OR REPLACE FUNCTION mcsync.mcsync_enqueue_tags_changed() {head} AS $$
DECLARE
    ids uuid[];
BEGIN
    -- Each branch names only the transition tables its event has.
    IF TG_OP = 'INSERT' THEN
        ids := ARRAY(SELECT DISTINCT {k} FROM mcsync_new_rows);
    ELSIF TG_OP = 'DELETE' THEN
        ids := ARRAY(SELECT DISTINCT {k} FROM mcsync_old_rows);
    ELSE
        ids := ARRAY(SELECT {k} FROM mcsync_new_rows UNION SELECT {k} FROM mcsync_old_rows);
    END IF;
    INSERT INTO mcsync.mailchimp_sync_queue AS q (user_id, contact_id, op, email)
    SELECT s.{t}, s.{i}, 'upsert', NULL
      FROM (SELECT * FROM {source} WHERE {_filter(mapping)}) s
      JOIN mcsync.mailchimp_connections c ON c.user_id = s.{t}
     WHERE s.{i} = ANY(ids)
    ON CONFLICT (user_id, contact_id) DO UPDATE
       SET op = 'upsert', version = q.version + 1, changed_at = now();
    IF FOUND THEN
        PERFORM pg_notify('mcsync', '');
    END IF;
    RETURN NULL;
END $$;
""" + _statement_triggers(
        table, "mcsync_contact_tags", dict.fromkeys(_EVENTS, "mcsync.mcsync_enqueue_tags_changed")
    )


def email_index_sql(mapping: SourceMapping) -> str:
    """Lets the worker find every contact that shares an address without scanning the user."""
    name = f"{mapping.table.split('.')[1]}_mcsync_email_idx"
    return (
        f"CREATE INDEX IF NOT EXISTS {quote(name)} ON {quote(mapping.table)}"
        f" ({quote(mapping.tenant)}, mcsync.mcsync_email_key({quote(mapping.email)}::text));\n"
    )


# Every trigger whose function is mcsync's, wherever it is (on the table an earlier mapping
# named, or 002's on `contacts`): what a regeneration replaces.
_DROP_OUR_TRIGGERS = """
DO $$
DECLARE
    item record;
BEGIN
    FOR item IN
        SELECT t.tgname, t.tgrelid::regclass AS target
          FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
         WHERE p.pronamespace = 'mcsync'::regnamespace AND NOT t.tgisinternal
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', item.tgname, item.target);
    END LOOP;
END $$;
"""


def generated_sql(mapping: SourceMapping, column_types: dict[str, str] | None = None) -> str:
    """Everything the mapping generates: mcsync's old triggers dropped, then the index, the view
    and the triggers. (Without `column_types`, BIRTHDAY and DATE columns are taken to be dates.)"""
    return (
        _DROP_OUR_TRIGGERS
        + email_index_sql(mapping)
        + view_sql(mapping, column_types)
        + triggers_sql(mapping)
    )


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
    for a full reconciliation. Runs in the caller's transaction (the migrations')."""
    from mcsync.schema import render

    warnings = check_against_catalog(conn, mapping)
    columns = _columns(conn, mapping.table) or {}
    types = {name: c.type for name, c in columns.items()}
    previous = conn.execute(
        render("SELECT fingerprint FROM mcsync.source_mapping", schema)
    ).fetchone()
    conn.execute(render(generated_sql(mapping, types), schema).encode())
    conn.execute(render("CALL mcsync.lock_down()", schema))
    conn.execute(
        render(
            "INSERT INTO mcsync.source_mapping (singleton, mapping, fingerprint)"
            " VALUES (true, %s, %s) ON CONFLICT (singleton) DO UPDATE SET"
            " mapping = excluded.mapping, fingerprint = excluded.fingerprint, applied_at = now()",
            schema,
        ),
        (json.dumps(mapping.model_dump(mode="json")), mapping.fingerprint),
    )
    changed = previous is not None and previous[0] != mapping.fingerprint
    queued = 0
    if changed:
        from mcsync.connections import queue_full_sync_all

        queued = queue_full_sync_all(conn)
    return Installed(warnings, changed, queued)
