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

# --- the upgrade's moves (mcsync.upgrade decides which run) -----------------------------------
# Who owns a schema of that name (and whether it is the installing role): one someone else
# created first is refused, never adopted.
SCHEMA_OWNER = """
SELECT r.rolname, r.rolname = CURRENT_USER FROM pg_catalog.pg_namespace n
  JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner WHERE n.nspname = %(schema)s
"""
# Where unqualified names resolve while the migrations run: the catalog first, never the
# installer's search_path. A fresh install's 001-003 create their tables in a staging schema
# (`{staging}`) that 004 empties; an old install's tables are found where they were (`{legacy}`).
PIN_SEARCH_PATH = "SET LOCAL search_path = pg_catalog, pg_temp"
STAGING_SEARCH_PATH = "SET LOCAL search_path = {staging}, pg_catalog, pg_temp"
LEGACY_SEARCH_PATH = "SET LOCAL search_path = pg_catalog, {legacy}, pg_temp"
CREATE_STAGING = "CREATE SCHEMA {staging}"
DROP_STAGING = "DROP SCHEMA {staging}"
# The schema an old install's tables live in (the one `mailchimp_connections` resolves to).
LEGACY_SCHEMA = """
SELECT n.nspname FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid = pg_catalog.to_regclass(%(table)s)
"""
# An exposed install's connections whose dc is not of Mailchimp's form are set aside before
# 004 (its constraint would refuse them) and kept, with the reason, once it ran.
# `{dc_form}` is a Literal, so the same text is run by `mcsync migrate` and printed by `mcsync sql`.
HAS_LEGACY_CONNECTIONS = "SELECT pg_catalog.to_regclass('mailchimp_connections') IS NOT NULL"
QUARANTINE_CONNECTIONS = """
CREATE TEMP TABLE mcsync_quarantine ON COMMIT DROP AS
SELECT * FROM mailchimp_connections WHERE dc !~ {dc_form}
"""
DROP_QUARANTINED_CONNECTIONS = "DELETE FROM mailchimp_connections WHERE dc !~ {dc_form}"
HAS_QUARANTINE = "SELECT pg_catalog.to_regclass('pg_temp.mcsync_quarantine') IS NOT NULL"
KEEP_QUARANTINED_CONNECTIONS = """
INSERT INTO mcsync.quarantined_connections SELECT q.*,
 'dc not of Mailchimp''s form' FROM pg_temp.mcsync_quarantine q
"""
DISTRUST_EXPOSED_ROWS = "CALL mcsync.distrust_exposed_rows()"
# The same moves where only a script runs them (`mcsync sql`, mcsync.upgrade assembles it): the
# old tables' schema is found by the script itself, where LEGACY_SCHEMA then LEGACY_SEARCH_PATH
# would be two round trips; and every connection's contacts are queued after an exposed
# upgrade (what `queue_full_sync_all` does for `mcsync migrate`).
LEGACY_SEARCH_PATH_FOUND = """
SELECT pg_catalog.set_config('search_path', 'pg_catalog, '
       || pg_catalog.quote_ident(n.nspname) || ', pg_temp', true)
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid = pg_catalog.to_regclass('mailchimp_connections')
"""
QUEUE_EVERY_CONNECTED_CONTACT = """
INSERT INTO mcsync.mailchimp_sync_queue (user_id, contact_id, op)
SELECT s.user_id, s.id, 'resync' FROM mcsync.source_contacts s
  JOIN mcsync.mailchimp_connections c
    ON c.user_id = s.user_id AND c.audience_id IS NOT NULL
ON CONFLICT (user_id, contact_id) DO NOTHING
"""
# After the generated view and triggers: revoke what PUBLIC and strangers may hold on them.
LOCK_DOWN = "CALL mcsync.lock_down()"

# --- what the mapping check reads of the app's table (mcsync.source, mcsync.source_keys) --------
# Whether the column is NOT NULL, and whether a primary key or a unique index (not partial, no
# expression) is on exactly that column: only then is the column unique by itself.
KEY_FACTS = """
SELECT a.attnotnull,
       EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                WHERE i.indrelid = c.oid AND i.indisunique AND i.indisvalid
                  AND i.indpred IS NULL AND i.indexprs IS NULL
                  AND i.indnkeyatts = 1 AND i.indkey[0] = a.attnum) AS unique_alone
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND NOT a.attisdropped AND a.attnum > 0
 WHERE n.nspname = %(schema)s AND c.relname = %(name)s AND a.attname = %(column)s
"""
# The mapping's filter, typed by the server over the app's table (no row read). Its holes:
# `{filter}` the mapping's expression (checked by mcsync.source: no dollar quote, no `;`),
# `{table}` a quoted Identifier. Run under PIN_SEARCH_PATH, as the triggers evaluate it.
FILTER_TYPE = "SELECT ({filter}) FROM {table} LIMIT 0"
