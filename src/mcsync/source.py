"""The source mapping: which table of the app holds its contacts, and which columns mcsync syncs.

One home for everything that names the app's columns. mcsync reads its mapping from a TOML file
(`MCSYNC_CONFIG`, e.g. `mcsync.toml`); without one, the built-in default is the schema mcsync
started with (`public.contacts`: id, user_id, email, first_name/last_name/phone as
FNAME/LNAME/PHONE, tags text[]). See docs/mapping.md for the format.

`mcsync migrate` checks the mapping against the catalog (`check_against_catalog`) and installs
what it generates (mcsync.source_sql: `install`), in the migrations' transaction:

- the view `mcsync.source_contacts (id, user_id, email, merge_fields jsonb, tags text[])`: the
  contacts as mcsync sees them, only the rows inside the mapping's filter. The worker, Sync Now,
  `verify` and the demo read contacts only through it, so no statement elsewhere names a column
  of the app (and the worker's and web's roles need no grant on the app's table);
- the statement-level triggers on the source table (and on a tag join table) that queue changes.

This module is the mapping's model and its checks; the SQL it generates is mcsync.source_sql's."""

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
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
)

from mcsync.install_store import filter_type, leads_an_index, table_columns

CONFIG_ENV = "MCSYNC_CONFIG"
VIEW = "mcsync.source_contacts"

# No '$': generated trigger bodies are dollar-quoted, and a name never has to be able to end one.
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# A dollar-quote delimiter ($$, $tag$): a filter holding one could end a generated body.
_DOLLAR_QUOTE = re.compile(r"\$[A-Za-z_0-9]*\$")
# Mailchimp's merge tags: upper-case letters, digits and underscores, at most 10 characters.
# (Mailchimp Marketing API, "Add merge field": `tag` is "The merge tag ... e.g. FNAME"; the
# 10-character limit is the audience settings form's.)
_MERGE_TAG = re.compile(r"^[A-Z][A-Z0-9_]{0,9}$")

MergeType = Literal["text", "phone", "birthday", "date", "number"]


class MappingError(ValueError):
    """The mapping is not usable; the message names the key (and the column) at fault."""


def _identifier(value: str) -> str:
    if not _IDENTIFIER.match(value):
        raise ValueError(f"{value!r} is not a plain identifier (letters, digits and _)")
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
    """Tags from a join table: one row per (contact, tag name), with the tenant who wrote it.

    `tenant` is required: the view and the triggers take a tag row only where its tenant is
    the contact's. A join table keyed by the contact's id alone lets any user who may write a
    row of it (their own row, so row level security lets it in) tag another user's contact,
    and the tag would land in the other user's audience (issue 17)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    table: QualifiedName
    key: Identifier = Field(description="the column holding the contact's id")
    name: Identifier = Field(description="the column holding the tag's name")
    tenant: Identifier = Field(description="the column holding the tag row's user (uuid)")


def _tags_kind(value: Any) -> str:
    if isinstance(value, TagsTable) or (isinstance(value, dict) and "table" in value):
        return "TagsTable"
    return "TagsColumn"


# A join table is told by its `table` key, so a mistake in one is reported as that kind's only.
_Tags = Annotated[
    Annotated[TagsColumn, Tag("TagsColumn")] | Annotated[TagsTable, Tag("TagsTable")],
    Discriminator(_tags_kind),
]


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
    tags: _Tags | None = TagsColumn(column="tags")
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
        # It is written into generated SQL (a view, and dollar-quoted trigger bodies): one
        # expression only. Anything else that slips through fails the catalog check.
        if value is not None and (not value.strip() or ";" in value or _DOLLAR_QUOTE.search(value)):
            raise ValueError("must be one SQL boolean expression (no ';', no dollar quotes)")
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


_TAG_TENANT_MISSING = (
    "a tag join table needs `tenant`, the column holding the user each tag row belongs to "
    "(a tag row counts only for a contact of the same user; docs/mapping.md)"
)


def _said(error: Any) -> str:
    if error["type"] == "missing" and error["loc"][-2:] == ("TagsTable", "tenant"):
        return _TAG_TENANT_MISSING
    return str(error["msg"])


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
        problems = [f"{_key_path(e['loc'])}: {_said(e)}" for e in exc.errors()]
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
    rows = table_columns(conn, table)
    return None if rows is None else {r[0]: _Column(r[1], r[2], r[3]) for r in rows}


def _leads_an_index(conn: psycopg.Connection[Any], table: str, column: str) -> bool:
    return leads_an_index(conn, table, column)


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
            tenant_said = "uuid (the user's id)"
            need("source.tags.tenant", tags.tenant, ("uuid",), tenant_said, tags.table, join)
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


def column_types(conn: psycopg.Connection[Any], table: str) -> dict[str, str]:
    """The source table's columns and their SQL types (empty when the table is missing)."""
    return {name: c.type for name, c in (_columns(conn, table) or {}).items()}


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
        kind = filter_type(conn, mapping.filter or "true", mapping.table)
    except psycopg.Error as exc:
        return f"{mapping.filter!r}: {exc.diag.message_primary or exc}"
    if kind != 16:  # bool
        return f"{mapping.filter!r} is not a boolean expression"
    return None
