"""Apps whose contacts live in other schemas than the example `contacts` table, each with the
source mapping (mcsync.toml) that installs mcsync on it. The end-to-end tests run the mirror
contract against each (tests/e2e/test_pipeline.py), through `SyncHarness`, which writes a contact
the way that app would: its own column names, tags in its own place, deletes as it deletes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mcsync.migrate import SQL_DIR
from mcsync.source import SourceMapping, parse_mapping

# The names the tests use for a contact's columns (the example `contacts` table's).
LOGICAL = ("user_id", "email", "first_name", "last_name", "phone", "notes", "address", "stage")


@dataclass(frozen=True)
class AppSchema:
    """One app's contacts schema and its mapping."""

    name: str
    ddl: str
    table: str
    id_column: str = "id"
    # logical name (LOGICAL, and any extra merge field's column) -> the app's column
    columns: dict[str, str] = field(default_factory=dict)
    # tags from a join table: (table, key column, name column, tenant column); None: the
    # `tags` column
    tags_table: tuple[str, str, str, str] | None = None
    tags_column: str = "tags"
    # a delete is `UPDATE ... SET <column> = now()` (a soft delete) instead of a DELETE
    soft_delete_column: str | None = None
    # merge fields the app adds to Mailchimp's defaults: (tag, type), from `column(tag.lower())`
    extra_merge_fields: tuple[tuple[str, str], ...] = ()
    # no config file: the built-in default mapping
    default_mapping: bool = False

    @property
    def toml(self) -> str | None:
        """The app's mcsync.toml, written from the facts above (so the two cannot disagree)."""
        if self.default_mapping:
            return None
        source = {
            "table": self.table,
            "id": self.id_column,
            "tenant": self.column("user_id"),
            "email": self.column("email"),
        }
        if self.soft_delete_column:
            source["filter"] = f"{self.soft_delete_column} IS NULL"
        # Naming merge fields replaces Mailchimp's defaults, so they are named with the extras.
        merge_fields = [
            f'FNAME = "{self.column("first_name")}"',
            f'LNAME = "{self.column("last_name")}"',
            f'PHONE = {{ column = "{self.column("phone")}", type = "phone" }}',
            *(
                f'{tag} = {{ column = "{self.column(tag.lower())}", type = "{kind}" }}'
                for tag, kind in self.extra_merge_fields
            ),
        ]
        if self.tags_table is None:
            tags = {"column": self.tags_column}
        else:
            tags = dict(zip(("table", "key", "name", "tenant"), self.tags_table, strict=True))
        return "\n".join(
            [
                "[source]",
                *(f'{k} = "{v}"' for k, v in source.items()),
                "\n[source.merge_fields]",
                *merge_fields,
                "\n[source.tags]",
                *(f'{k} = "{v}"' for k, v in tags.items()),
                "",
            ]
        )

    @property
    def mapping(self) -> SourceMapping:
        toml = self.toml
        return parse_mapping(toml) if toml else SourceMapping()

    def column(self, logical: str) -> str:
        if logical == "tags":
            return self.tags_column
        return self.columns.get(logical, logical)

    def audience_merge_fields(self) -> list[dict[str, Any]] | None:
        """The emulator audience's merge fields: Mailchimp's defaults plus the app's extras."""
        if not self.extra_merge_fields:
            return None
        from mcsync.emulator.state import DEFAULT_MERGE_FIELDS

        fields = [{"tag": t, "type": ty, "name": n} for t, ty, n in DEFAULT_MERGE_FIELDS]
        return fields + [{"tag": t, "type": ty, "name": t} for t, ty in self.extra_merge_fields]


CONTACTS = AppSchema(
    name="contacts",
    ddl=(SQL_DIR / "example_contacts.sql").read_text(),
    table="contacts",
    default_mapping=True,
)

# (a) Renamed columns in another schema, and soft deletes: a row with deleted_at set is not a
# contact (the filter), so a soft delete archives its member and an undelete restores it.
RENAMED_SOFT_DELETE = AppSchema(
    name="renamed_soft_delete",
    ddl="""
CREATE SCHEMA crm;
CREATE TABLE crm.people (
    person_id     uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id    uuid NOT NULL,
    given_name    text,
    family_name   text,
    email_address varchar(320),
    mobile        text,
    labels        text[] NOT NULL DEFAULT '{}',
    notes         text,
    address       text,
    stage         text,
    deleted_at    timestamptz
);
CREATE INDEX people_account_id_idx ON crm.people (account_id);
""",
    table="crm.people",
    id_column="person_id",
    columns={
        "user_id": "account_id",
        "email": "email_address",
        "first_name": "given_name",
        "last_name": "family_name",
        "phone": "mobile",
    },
    tags_column="labels",
    soft_delete_column="deleted_at",
)

# (b) Tags in a join table, and an extra merge field (BIRTHDAY from a date column).
TAG_TABLE_BIRTHDAY = AppSchema(
    name="tag_table_birthday",
    ddl="""
CREATE TABLE public.clients (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    coach_id   uuid NOT NULL,
    first_name text,
    last_name  text,
    email      text,
    phone      text,
    birthday   date,
    notes      text,
    address    text,
    stage      text
);
CREATE INDEX clients_coach_id_idx ON public.clients (coach_id);
CREATE TABLE public.client_tags (
    client_id uuid NOT NULL REFERENCES public.clients (id) ON DELETE CASCADE,
    tag       text NOT NULL,
    coach_id  uuid NOT NULL,
    PRIMARY KEY (client_id, tag)
);
""",
    table="public.clients",
    columns={"user_id": "coach_id"},
    tags_table=("public.client_tags", "client_id", "tag", "coach_id"),
    extra_merge_fields=(("BIRTHDAY", "birthday"),),
)

OTHER_SCHEMAS = (RENAMED_SOFT_DELETE, TAG_TABLE_BIRTHDAY)
ALL_SCHEMAS = (CONTACTS, *OTHER_SCHEMAS)
