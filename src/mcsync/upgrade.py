"""How `mcsync migrate` runs the migrations without trusting what a neighbour could have planted
or written (issue 17).

- Search path. Nothing resolves through the installer's `search_path`: a role with CREATE on
  `public` could put an exact-signature overload (`public.format(text, regclass)`) in front of
  a catalog function. A fresh install runs 001-004 with a new, empty staging schema first
  (001-003 create their tables unqualified; 004 moves them into mcsync's schema; the staging
  schema is dropped) and `pg_catalog` before anything else; an upgrade of 001-003 with
  `pg_catalog` first and the old tables' schema after it; everything later, and everything
  generated, with `pg_catalog, pg_temp` alone.
- Ownership. A schema of mcsync's name owned by another role is refused, before anything runs.
- An exposed install. Tables 001-003 put in `public` were writable by `anon` on Supabase. When
  this run applies 004 over them, the upgrade trusts none of their rows: a connection whose dc
  is not Mailchimp's form is quarantined (moved to mcsync.quarantined_connections) instead of
  failing 004's check, the work tables are emptied and an unbound token two rows hold is
  withdrawn (mcsync.distrust_exposed_rows, sql/007), and every connection gets a full sync."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import psycopg

from mcsync import install_store as store

_DC_FORM = "^[a-z]+[0-9]+$"  # 004's mailchimp_connections_dc_form


class UntrustedSchemaError(RuntimeError):
    """mcsync's schema exists and belongs to another role."""


def refuse_foreign_schema(conn: psycopg.Connection[Any], schema: str) -> None:
    """Raise when a schema named `schema` exists and the installing role does not own it."""
    row = store.schema_owner(conn, schema)
    if row is not None and not row[1]:
        raise UntrustedSchemaError(
            f"schema {schema} is owned by {row[0]}, not by the installing role: a schema "
            "someone else created first must be dropped, not adopted (docs/install.md)"
        )


@dataclass
class Plan:
    """How this run sets the search_path, and what it does around 004."""

    staging: str | None = None  # a fresh install's staging schema
    exposed: bool = False  # 004 runs over tables that lived outside mcsync's schema
    # Only False for a set of files without 004 (a test's copy of an old release), whose
    # 001-003 must create their tables where the installer's search_path says.
    pin: bool = True

    def before(self, conn: psycopg.Connection[Any], legacy_table: str | None) -> None:
        """Pin the search_path for the migrations (and quarantine before 004)."""
        if self.staging is not None:
            store.stage_in(conn, self.staging)
            return
        if self.exposed and legacy_table is not None:
            store.resolve_in_legacy_schema(conn, legacy_table)
            store.quarantine_connections(conn, _DC_FORM)
            return
        if self.pin:
            store.pin_search_path(conn)

    def after(self, conn: psycopg.Connection[Any], schema: str) -> None:
        """Once the migrations are in: drop the staging schema, distrust an exposed install's
        rows, and pin the search_path for what follows."""
        if self.staging is not None:
            store.drop_staging(conn, self.staging)
        if self.pin:
            store.pin_search_path(conn)
        if self.exposed:
            store.distrust_exposed_rows(conn, schema)


def plan(pending: list[str], done: set[str]) -> Plan:
    """The plan for migrations `pending` over an install with `done` applied (versions)."""
    if "004" not in pending:
        return Plan(pin=not {"001", "002", "003"} & set(pending))
    if "001" in pending:
        return Plan(staging=f"mcsync_staging_{secrets.token_hex(6)}")
    return Plan(exposed=bool(done & {"001", "002", "003"}))


# --- the same, as text, for `mcsync sql` (a migration tool of the app's own) -------------------
# The statements are install_store's (mcsync.queries.install); this only chooses among them.

_STAGING = "mcsync_install_staging"


def path_before(versions: list[str]) -> str:
    """The script's opening: the search_path (and quarantine) `Plan.before` would set."""
    if "004" in versions and "001" in versions:
        return store.staging_script(_STAGING)[0]
    if "004" in versions:
        return store.legacy_path_script(_DC_FORM)
    return store.pinned_path_script()


def path_after(versions: list[str], schema: str) -> str:
    """What `Plan.after` does, once the migrations are in."""
    out = ""
    if "004" in versions and "001" in versions:
        out += store.staging_script(_STAGING)[1]
    out += store.pinned_path_script()
    if "004" in versions and "001" not in versions:
        out += store.distrust_exposed_rows_script(schema)
    return out


def full_sync_after(versions: list[str], schema: str) -> str:
    """After an exposed upgrade, every connection's contacts queued (what `queue_full_sync_all`
    does for `mcsync migrate`)."""
    if "004" not in versions or "001" in versions:
        return ""
    return store.full_sync_script(schema)


def lock_down(schema: str) -> str:
    """What was generated is locked down like the rest (`install_store.lock_down`)."""
    return store.lock_down_script(schema)
