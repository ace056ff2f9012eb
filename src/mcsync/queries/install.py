"""The statements of installing: the migration runner's bookkeeping, the source mapping's
record and the catalog reads that check a mapping against the app's table (run by
mcsync.install_store). Written for the default schema; see mcsync.queries.

The bookkeeping table's name is a psycopg.sql hole (`{table}`): before sql/004 it lived wherever
the search_path put it, so the store fills it with the name it found (a quoted Identifier)."""

from __future__ import annotations

# Every mcsync process that migrates takes this lock first (one runner at a time).
LOCK_MIGRATIONS = "SELECT pg_catalog.pg_advisory_xact_lock(%(key)s)"
# The table of that name, or NULL (to_regclass never raises for a missing one).
REGCLASS = "SELECT pg_catalog.to_regclass(%(name)s)"

APPLIED_MIGRATIONS = "SELECT version, name, checksum FROM {table}"
# Created unqualified, where the search_path points, as the runner of 001-003 did; sql/004
# moves it into mcsync's schema.
CREATE_BOOKKEEPING = """CREATE TABLE mcsync_schema_migrations (
    version    text PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now())"""
RECORD_MIGRATION = (
    "INSERT INTO {table} (version, name, checksum) VALUES (%(version)s, %(name)s, %(checksum)s)"
)

# The source mapping installed (one row), and recording a new one. Its holes are literals, so
# the same text serves `mcsync migrate` (run) and `mcsync sql` (printed into the script).
SOURCE_MAPPING_FINGERPRINT = "SELECT fingerprint FROM mcsync.source_mapping"
RECORD_SOURCE_MAPPING = """INSERT INTO mcsync.source_mapping (singleton, mapping, fingerprint)
VALUES (true, {mapping}, {fingerprint})
ON CONFLICT (singleton) DO UPDATE SET mapping = excluded.mapping,
    fingerprint = excluded.fingerprint, applied_at = now()"""

# The app's table as the catalog has it: each column's type and category (an array's element
# category too), whether the table exists at all, and whether an index starts with a column.
TABLE_COLUMNS = """
SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),
       t.typcategory::pg_catalog.text, e.typcategory::pg_catalog.text
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_attribute a
    ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_catalog.pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
 WHERE n.nspname = %(schema)s AND c.relname = %(name)s AND c.relkind IN ('r', 'p')
"""
TABLE_EXISTS = """
SELECT 1 FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(schema)s AND c.relname = %(name)s AND c.relkind IN ('r', 'p')
"""
LEADS_AN_INDEX = """
SELECT 1 FROM pg_catalog.pg_index i
  JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
 WHERE n.nspname = %(schema)s AND c.relname = %(name)s AND a.attname = %(column)s
"""
