"""Every SQL statement mcsync runs, in one place, named for what it does.

Parameters are psycopg named placeholders. Array parameters are passed as Python lists.
mcsync's own objects are always schema-qualified (`mcsync.<table>`, see mcsync.schema); the
statements are written for the default schema and rendered once, at import, for the schema
this process is configured with (MCSYNC_SCHEMA). The app's contacts are read only through the
view `mcsync.source_contacts`, which `mcsync migrate` generates from the source mapping
(mcsync.source): no statement here names the app's table or columns."""

from __future__ import annotations

from mcsync.schema import configured_schema, qualify_catalog_calls, render

SCHEMA = configured_schema()

NOTIFY = "SELECT pg_notify('mcsync', '')"
CHANNEL = "mcsync"

# --- connections -----------------------------------------------------------------------------

GET_CONNECTION = "SELECT * FROM mcsync.mailchimp_connections WHERE user_id = %(user_id)s"

ALL_CONNECTIONS = "SELECT * FROM mcsync.mailchimp_connections ORDER BY connected_at, user_id"

UPSERT_CONNECTION = """
INSERT INTO mcsync.mailchimp_connections AS c
    (user_id, access_token_encrypted, dc, api_endpoint, account_name,
     audience_id, audience_name, double_optin)
VALUES (%(user_id)s, %(token)s, %(dc)s, %(api_endpoint)s, %(account_name)s,
        %(audience_id)s, %(audience_name)s, %(double_optin)s)
ON CONFLICT (user_id) DO UPDATE SET
    access_token_encrypted = excluded.access_token_encrypted,
    dc = excluded.dc, api_endpoint = excluded.api_endpoint,
    account_name = excluded.account_name,
    audience_id = excluded.audience_id, audience_name = excluded.audience_name,
    double_optin = excluded.double_optin,
    sync_status = 'active', status_reason = NULL, notice = NULL, consecutive_failures = 0,
    last_error = NULL, next_probe_at = NULL, connected_at = now(), updated_at = now()
"""

# Whether mcsync has told this audience about anyone (the ledger has a member of it).
AUDIENCE_HAS_LEDGER = """
SELECT EXISTS (SELECT 1 FROM mcsync.mailchimp_members
                WHERE user_id = %(user_id)s AND audience_id = %(audience_id)s)
"""

SET_AUDIENCE = """
UPDATE mcsync.mailchimp_connections
   SET audience_id = %(audience_id)s, audience_name = %(audience_name)s,
       double_optin = %(double_optin)s, updated_at = now()
 WHERE user_id = %(user_id)s
"""

DELETE_CONNECTION = "DELETE FROM mcsync.mailchimp_connections WHERE user_id = %(user_id)s"
DELETE_USER_QUEUE = """
WITH bulk AS (DELETE FROM mcsync.mailchimp_sync_bulk WHERE user_id = %(user_id)s)
DELETE FROM mcsync.mailchimp_sync_queue WHERE user_id = %(user_id)s
"""
DELETE_USER_REJECTIONS = (
    "DELETE FROM mcsync.mailchimp_rejected_contacts WHERE user_id = %(user_id)s"
)
FORGET_CONTACT_LINKS = "DELETE FROM mcsync.mailchimp_contact_links WHERE user_id = %(user_id)s"

# An audience change counted against the user's window (at most %(limit)s per %(window)s
# seconds); no row when the limit is reached, and then how long until the window ends.
COUNT_AUDIENCE_CHANGE = """
UPDATE mcsync.mailchimp_connections
   SET audience_changes = CASE WHEN fresh THEN 1 ELSE audience_changes + 1 END,
       audience_changes_since = CASE WHEN fresh THEN now() ELSE audience_changes_since END
  FROM (SELECT coalesce(audience_changes_since <= now() - make_interval(secs => %(window)s),
                        true) AS fresh
          FROM mcsync.mailchimp_connections WHERE user_id = %(user_id)s) w
 WHERE user_id = %(user_id)s AND (w.fresh OR audience_changes < %(limit)s)
RETURNING audience_changes
"""
AUDIENCE_CHANGE_WAIT = """
SELECT ceil(extract(epoch FROM audience_changes_since + make_interval(secs => %(window)s) - now()))
  FROM mcsync.mailchimp_connections WHERE user_id = %(user_id)s
"""
# An audience change: the old audience's own events go, rows of a full sync ('resync') stay.
DELETE_USER_EVENTS = """
DELETE FROM mcsync.mailchimp_sync_queue WHERE user_id = %(user_id)s AND op <> 'resync'
"""

# An empty token is none: an upgrade withdrew it (mcsync.distrust_exposed_rows, sql/007), and
# the connection waits for its user to reconnect.
ALL_ENCRYPTED_TOKENS = """
SELECT user_id, access_token_encrypted FROM mcsync.mailchimp_connections
 WHERE access_token_encrypted <> ''
"""
# Tokens still stored in the old form, not bound to their user (see mcsync.crypto).
COUNT_UNBOUND_TOKENS = """
SELECT count(*) FROM mcsync.mailchimp_connections
 WHERE access_token_encrypted NOT LIKE %(prefix)s AND access_token_encrypted <> ''
"""
SET_ENCRYPTED_TOKEN = """
UPDATE mcsync.mailchimp_connections SET access_token_encrypted = %(token)s, updated_at = now()
 WHERE user_id = %(user_id)s
"""

CONNECTED_USERS = (
    "SELECT user_id FROM mcsync.mailchimp_connections WHERE audience_id IS NOT NULL ORDER BY 1"
)

QUEUE_ALL_CONTACTS = """
INSERT INTO mcsync.mailchimp_sync_queue AS q (user_id, contact_id, op)
SELECT user_id, id, 'resync' FROM mcsync.source_contacts WHERE user_id = %(user_id)s
ON CONFLICT (user_id, contact_id) DO UPDATE
   SET version = q.version + 1, changed_at = now(), next_retry_at = now(), attempts = 0
"""

# Contacts mcsync synced into the current audience whose rows are gone (deleted while the
# connection was away, when no trigger fired for them).
QUEUE_VANISHED_CONTACTS = """
INSERT INTO mcsync.mailchimp_sync_queue AS q (user_id, contact_id, op, email)
SELECT l.user_id, l.contact_id, 'delete', m.email
  FROM mcsync.mailchimp_contact_links l
  JOIN mcsync.mailchimp_connections c ON c.user_id = l.user_id AND c.audience_id = l.audience_id
  LEFT JOIN mcsync.mailchimp_members m
         ON m.user_id = l.user_id AND m.audience_id = l.audience_id AND m.email_hash = l.email_hash
 WHERE l.user_id = %(user_id)s
   AND NOT EXISTS (SELECT 1 FROM mcsync.source_contacts ct
                    WHERE ct.id = l.contact_id AND ct.user_id = l.user_id)
ON CONFLICT (user_id, contact_id) DO UPDATE
   SET version = q.version + 1, changed_at = now(), next_retry_at = now(), attempts = 0
"""

# --- claiming ----------------------------------------------------------------------------------

# Lease accounts that have due work (or, when paused, a due probe) and no live lease. One
# worker per account at a time keeps the in-flight cap and per-contact order across workers.
CLAIM_ACCOUNTS = """
UPDATE mcsync.mailchimp_connections c
   SET lease_owner = %(owner)s,
       lease_until = now() + make_interval(secs => %(lease_seconds)s)
 WHERE c.user_id IN (
       SELECT a.user_id FROM mcsync.mailchimp_connections a
        WHERE a.audience_id IS NOT NULL
          AND (a.lease_until IS NULL OR a.lease_until < now() OR a.lease_owner = %(owner)s)
          AND NOT (a.user_id = ANY(%(busy)s::uuid[]))
          AND (   (a.sync_status = 'active' AND (
                      EXISTS (SELECT 1 FROM mcsync.mailchimp_sync_queue q
                               WHERE q.user_id = a.user_id AND q.next_retry_at <= now())
                      OR EXISTS (SELECT 1 FROM mcsync.mailchimp_sync_bulk b
                                  WHERE b.user_id = a.user_id)))
               OR (a.sync_status = 'paused' AND a.next_probe_at <= now()))
        ORDER BY a.last_sync_at NULLS FIRST
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED)
RETURNING c.*,
          EXISTS (SELECT 1 FROM mcsync.mailchimp_sync_bulk b
                   WHERE b.user_id = c.user_id) AS has_bulk
"""

# The heartbeat: a long pass (a big import under a slow Mailchimp) keeps its account and its
# rows, so no other worker starts on them while this one is still working.
# Expanding an import, a slice at a time (see WorkerStore.expand_bulk). The trigger writes one
# row per import, whatever its size; before its first slice, an import larger than %(chunk)s
# ids is split once into rows of %(chunk)s, so each expansion then reads and deletes one small
# row. (Trimming the slice off the front of one big array rewrote the whole array every time:
# for 1,000,000 contacts, 200 rewrites of up to 16 MB.)
SPLIT_OLDEST_BULK_ROW = """
WITH big AS (
    DELETE FROM mcsync.mailchimp_sync_bulk
     WHERE id = (SELECT id FROM mcsync.mailchimp_sync_bulk
                  WHERE user_id = %(user_id)s ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
       AND cardinality(contact_ids) > %(chunk)s
    RETURNING user_id, contact_ids, enqueued_at
)
INSERT INTO mcsync.mailchimp_sync_bulk (user_id, contact_ids, enqueued_at)
SELECT big.user_id, array_agg(u.id ORDER BY u.n), big.enqueued_at
  FROM big, unnest(big.contact_ids) WITH ORDINALITY AS u(id, n)
 GROUP BY big.user_id, big.enqueued_at, (u.n - 1) / %(chunk)s
 ORDER BY (u.n - 1) / %(chunk)s
"""

# The oldest (small) row of the account's imports becomes queue rows, and is gone.
EXPAND_OLDEST_BULK_ROW = """
WITH taken AS (
    DELETE FROM mcsync.mailchimp_sync_bulk
     WHERE id = (SELECT id FROM mcsync.mailchimp_sync_bulk
                  WHERE user_id = %(user_id)s ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING user_id, contact_ids, enqueued_at
)
INSERT INTO mcsync.mailchimp_sync_queue AS q (user_id, contact_id, op, enqueued_at, changed_at)
SELECT t.user_id, u.id, 'upsert', t.enqueued_at, t.enqueued_at
  FROM taken t, unnest(t.contact_ids) AS u(id)
ON CONFLICT (user_id, contact_id) DO UPDATE
   SET version = q.version + 1, changed_at = greatest(q.changed_at, excluded.changed_at)
"""

# The heartbeat: a long pass (a big import under a slow Mailchimp) keeps its account and its
# rows, so no other worker starts on them while this one is still working.
RENEW_ACCOUNT_LEASE = """
WITH account AS (
    UPDATE mcsync.mailchimp_connections
       SET lease_until = now() + make_interval(secs => %(lease_seconds)s)
     WHERE user_id = %(user_id)s AND lease_owner = %(owner)s
    RETURNING user_id
), renewed AS (
    UPDATE mcsync.mailchimp_sync_queue
       SET locked_until = now() + make_interval(secs => %(lease_seconds)s)
     WHERE user_id IN (SELECT user_id FROM account)
       AND locked_by = %(owner)s AND locked_until IS NOT NULL
)
SELECT EXISTS (SELECT 1 FROM account) AS holds
"""

RELEASE_ACCOUNT = """
UPDATE mcsync.mailchimp_connections SET lease_owner = NULL, lease_until = NULL
 WHERE user_id = %(user_id)s AND lease_owner = %(owner)s
"""

# The account lease makes this worker the account's only server, so rows it locked itself in
# a pass that died (a lost database connection) are taken back at once, not after the lease.
# `= ANY(ARRAY(...))`, not `IN (...)`: with IN the planner hash-joins the subquery against a
# sequential scan of the whole queue (dead rows included), a cost that grows with the import;
# an array of ids is fetched through the primary key, 500 lookups whatever the queue holds.
CLAIM_DUE_EVENTS = """
UPDATE mcsync.mailchimp_sync_queue q
   SET locked_by = %(owner)s,
       locked_until = now() + make_interval(secs => %(lease_seconds)s)
 WHERE q.id = ANY(ARRAY(
       SELECT id FROM mcsync.mailchimp_sync_queue
        WHERE user_id = %(user_id)s AND next_retry_at <= now()
          AND (locked_until IS NULL OR locked_until < now() OR locked_by = %(owner)s)
          AND NOT (id = ANY(%(exclude)b::bigint[]))
        ORDER BY next_retry_at, id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED))
RETURNING q.id, q.contact_id, q.op, q.email, q.version, q.attempts, q.changed_at
"""

# --- reading what the planner needs ------------------------------------------------------------

# The arrays of a pass's keys (ids, hashes, addresses: up to a few hundred each) are sent in
# binary (`%(name)b`): psycopg dumps a list of 500 UUIDs or strings in about a fifth of the
# time it takes to write and escape the text form, a cost the worker paid several times a pass.

# Every reader of a pass's rows looks its keys up one by one: `unnest` the array, and for each
# key a LATERAL subquery (OFFSET 0 keeps PostgreSQL from flattening it into a join), which can
# only be an index lookup of that key. Neither `= ANY(array)` nor a plain join with the array
# does that reliably: both leave the plan to the statistics, and mid-import, before ANALYZE
# has seen the new rows, PostgreSQL takes the user's rows for few and reads all of them
# (through the user's index, or hashed against the keys), filtering the keys. Measured at
# 100,000 contacts: 60,500 ledger rows and 100,000 contacts read per pass to find 500, a cost
# per pass that grew with the import. Inside the subquery, only the columns of the key the
# lookup should use: given another indexed column too (the links' audience), the planner may
# pick that index and filter the key. The arrays hold distinct keys (the callers make sure).
CONTACTS_BY_ID = """
SELECT s.id, s.email, s.merge_fields, s.tags
  FROM unnest(%(ids)b::uuid[]) AS k(id),
       LATERAL (SELECT * FROM mcsync.source_contacts c
                 WHERE c.id = k.id AND c.user_id = %(user_id)s OFFSET 0) s
"""

# The contacts at some addresses. Those already read by id (%(known)s: the pass's own contacts,
# nearly every row of an import's pass) come back as their id alone, so a pass does not fetch,
# send and decode each of its contacts twice.
CONTACTS_BY_EMAIL = """
SELECT id, known,
       CASE WHEN known THEN NULL ELSE email END AS email,
       CASE WHEN known THEN NULL ELSE merge_fields END AS merge_fields,
       CASE WHEN known THEN NULL ELSE tags END AS tags
  FROM (SELECT s.*, s.id = ANY(%(known)b::uuid[]) AS known
          FROM unnest(%(emails)b::text[]) AS k(email),
               LATERAL (SELECT * FROM mcsync.source_contacts c
                         WHERE c.user_id = %(user_id)s
                           AND mcsync.mcsync_email_key(c.email) = k.email OFFSET 0) s) c
"""

LINKS_BY_CONTACT = """
SELECT l.contact_id, l.email_hash, l.maybe_hashes, l.changed_at
  FROM unnest(%(ids)b::uuid[]) AS k(id),
       LATERAL (SELECT * FROM mcsync.mailchimp_contact_links
                 WHERE user_id = %(user_id)s AND contact_id = k.id OFFSET 0) l
 WHERE l.audience_id = %(audience_id)s
"""

# Pending changes of some contacts: with their links, when each last changed (contact_recency).
PENDING_BY_CONTACT = """
SELECT q.contact_id, q.changed_at
  FROM unnest(%(ids)b::uuid[]) AS k(id),
       LATERAL (SELECT * FROM mcsync.mailchimp_sync_queue
                 WHERE user_id = %(user_id)s AND contact_id = k.id OFFSET 0) q
"""

LEDGER_BY_HASH = """
SELECT email_hash, email, fields_hash, tags, maybe_tags, status, archived, archive_status,
       pending_rename_from
  FROM unnest(%(hashes)b::text[]) AS k(hash),
       LATERAL (SELECT * FROM mcsync.mailchimp_members
                 WHERE user_id = %(user_id)s AND audience_id = %(audience_id)s
                   AND email_hash = k.hash OFFSET 0) m
"""

# --- recording outcomes ------------------------------------------------------------------------

UPSERT_LEDGER = """
INSERT INTO mcsync.mailchimp_members AS m
    (user_id, audience_id, email_hash, email, fields_hash, tags, maybe_tags, status, archived,
     archive_status, pending_rename_from)
SELECT %(user_id)s, %(audience_id)s, u.email_hash, u.email, u.fields_hash,
       coalesce((SELECT array_agg(t) FROM jsonb_array_elements_text(u.tags) t), '{}'),
       coalesce((SELECT array_agg(t) FROM jsonb_array_elements_text(u.maybe_tags) t), '{}'),
       u.status, u.archived, u.archive_status, u.pending_rename_from
  FROM jsonb_to_recordset(%(rows)s::jsonb)
       AS u(email_hash text, email text, fields_hash text, tags jsonb, maybe_tags jsonb,
            status text, archived boolean, archive_status text, pending_rename_from text)
ON CONFLICT (user_id, audience_id, email_hash) DO UPDATE SET
    email = excluded.email, fields_hash = excluded.fields_hash, tags = excluded.tags,
    maybe_tags = excluded.maybe_tags, archive_status = excluded.archive_status,
    pending_rename_from = excluded.pending_rename_from,
    status = coalesce(excluded.status, m.status), archived = excluded.archived,
    updated_at = now()
"""

MARK_ARCHIVING = """
UPDATE mcsync.mailchimp_members SET archive_status = %(status)s, updated_at = now()
 WHERE user_id = %(user_id)s AND audience_id = %(audience_id)s AND email_hash = %(email_hash)s
"""

# Fencing: a pass records only while its worker still holds the account (a worker that lost
# its lease, say after a stall, leaves the recording to the new holder; its calls were
# written ahead, so nothing is lost and the replay is idempotent).
HOLDS_ACCOUNT = """
SELECT 1 FROM mcsync.mailchimp_connections
 WHERE user_id = %(user_id)s AND lease_owner = %(owner)s
   FOR SHARE
"""

DELETE_LEDGER = """
DELETE FROM mcsync.mailchimp_members
 WHERE user_id = %(user_id)s AND audience_id = %(audience_id)s
   AND email_hash = ANY(%(hashes)s::text[])
"""

UPSERT_LINKS = """
INSERT INTO mcsync.mailchimp_contact_links AS l
    (user_id, contact_id, audience_id, email_hash, changed_at)
SELECT %(user_id)s, u.contact_id, %(audience_id)s, u.email_hash, u.changed_at
  FROM jsonb_to_recordset(%(rows)s::jsonb)
       AS u(contact_id uuid, email_hash text, changed_at timestamptz)
ON CONFLICT (user_id, contact_id) DO UPDATE SET
    audience_id = excluded.audience_id, email_hash = excluded.email_hash,
    maybe_hashes = '{}', changed_at = excluded.changed_at
"""

# Before the calls: the members these contacts may become (see mcsync.ledger.write_ahead_ledger).
WRITE_AHEAD_LINKS = """
INSERT INTO mcsync.mailchimp_contact_links AS l (user_id, contact_id, audience_id, maybe_hashes)
SELECT %(user_id)s, u.contact_id, %(audience_id)s, ARRAY[u.email_hash]
  FROM unnest(%(ids)b::uuid[], %(hashes)b::text[]) AS u(contact_id, email_hash)
ON CONFLICT (user_id, contact_id) DO UPDATE SET
    maybe_hashes = CASE WHEN excluded.maybe_hashes[1] = ANY(l.maybe_hashes) THEN l.maybe_hashes
                        ELSE l.maybe_hashes || excluded.maybe_hashes END
"""

DELETE_LINKS = """
DELETE FROM mcsync.mailchimp_contact_links
 WHERE user_id = %(user_id)s AND contact_id = ANY(%(ids)s::uuid[])
"""

UPSERT_REJECTIONS = """
INSERT INTO mcsync.mailchimp_rejected_contacts AS r
    (user_id, contact_id, email, severity, reason, field, detail)
SELECT %(user_id)s, u.contact_id, u.email, u.severity, u.reason, u.field, u.detail
  FROM jsonb_to_recordset(%(rows)s::jsonb)
       AS u(contact_id uuid, email text, severity text, reason text, field text, detail text)
ON CONFLICT (user_id, contact_id) DO UPDATE SET
    email = excluded.email, severity = excluded.severity, reason = excluded.reason,
    field = excluded.field, detail = excluded.detail, rejected_at = now()
"""

CLEAR_REJECTIONS = """
DELETE FROM mcsync.mailchimp_rejected_contacts
 WHERE user_id = %(user_id)s AND contact_id = ANY(%(ids)s::uuid[])
"""

# Done: delete the row only if no newer change arrived while we worked on it.
COMPLETE_EVENTS = """
DELETE FROM mcsync.mailchimp_sync_queue q
 USING unnest(%(ids)b::bigint[], %(versions)b::bigint[]) AS d(id, version)
 WHERE q.id = d.id AND q.version = d.version
"""

RELEASE_EVENTS = """
UPDATE mcsync.mailchimp_sync_queue SET locked_by = NULL, locked_until = NULL
 WHERE id = ANY(%(ids)b::bigint[]) AND locked_by = %(owner)s
"""

RETRY_EVENTS = """
UPDATE mcsync.mailchimp_sync_queue q
   SET attempts = q.attempts + 1,
       next_retry_at = now() + make_interval(secs => d.delay),
       last_error = d.error, locked_by = NULL, locked_until = NULL
  FROM unnest(%(ids)b::bigint[], %(delays)s::float8[], %(errors)b::text[]) AS d(id, delay, error)
 WHERE q.id = d.id
RETURNING q.id, q.attempts
"""

# Throttling is not a failure: reschedule without spending an attempt.
DEFER_EVENTS = """
UPDATE mcsync.mailchimp_sync_queue
   SET next_retry_at = now() + make_interval(secs => %(delay)s),
       locked_by = NULL, locked_until = NULL
 WHERE id = ANY(%(ids)b::bigint[])
"""

# A 429 (or "too many connections") holds back the whole account, not just the rows that hit
# it: every row due before the pause ends waits with them. Attempts are not spent.
DEFER_USER_EVENTS = """
UPDATE mcsync.mailchimp_sync_queue
   SET next_retry_at = now() + make_interval(secs => %(delay)s)
 WHERE user_id = %(user_id)s
   AND next_retry_at < now() + make_interval(secs => %(delay)s)
   AND (locked_until IS NULL OR locked_until < now() OR locked_by = %(owner)s)
"""

# --- connection health -------------------------------------------------------------------------

# The audience's double opt-in setting, as Mailchimp has it now (changed there since connect).
SET_DOUBLE_OPTIN = """
UPDATE mcsync.mailchimp_connections
   SET double_optin = %(double_optin)s, updated_at = now()
 WHERE user_id = %(user_id)s AND audience_id = %(audience_id)s
"""

# At most once a second per account, and never waiting: an import's concurrent passes would
# otherwise each rewrite the account's one row, queueing behind each other's fence
# (HOLDS_ACCOUNT ... FOR SHARE) and leaving a dead row version per pass. A row another pass is
# recording under is skipped (that pass, or the next, marks it).
MARK_SYNCED = """
UPDATE mcsync.mailchimp_connections
   SET last_sync_at = now(), consecutive_failures = 0, updated_at = now()
 WHERE user_id = (
       SELECT user_id FROM mcsync.mailchimp_connections
        WHERE user_id = %(user_id)s
          AND (consecutive_failures <> 0 OR last_sync_at IS NULL
               OR last_sync_at < now() - interval '1 second')
          FOR UPDATE SKIP LOCKED)
"""

COUNT_THROTTLED = """
UPDATE mcsync.mailchimp_connections
   SET throttled_count = throttled_count + 1, updated_at = now()
 WHERE user_id = %(user_id)s
"""

RECORD_FAILURE = """
UPDATE mcsync.mailchimp_connections
   SET consecutive_failures = consecutive_failures + 1, last_error = %(error)s, updated_at = now()
 WHERE user_id = %(user_id)s
"""

PAUSE_CONNECTION = """
UPDATE mcsync.mailchimp_connections
   SET sync_status = 'paused', status_reason = 'failures', notice = %(notice)s,
       last_error = %(error)s, next_probe_at = now() + make_interval(secs => %(probe_in)s),
       updated_at = now()
 WHERE user_id = %(user_id)s AND sync_status = 'active'
"""

RESCHEDULE_PROBE = """
UPDATE mcsync.mailchimp_connections
   SET next_probe_at = now() + make_interval(secs => %(probe_in)s),
       last_error = %(error)s, updated_at = now()
 WHERE user_id = %(user_id)s
"""

RESUME_CONNECTION = """
UPDATE mcsync.mailchimp_connections
   SET sync_status = 'active', status_reason = NULL, notice = NULL, next_probe_at = NULL,
       consecutive_failures = 0, last_error = NULL, updated_at = now()
 WHERE user_id = %(user_id)s
"""

MAKE_USER_EVENTS_DUE = """
UPDATE mcsync.mailchimp_sync_queue SET next_retry_at = now(), attempts = 0
 WHERE user_id = %(user_id)s
"""

MARK_CONNECTION_ERROR = """
UPDATE mcsync.mailchimp_connections
   SET sync_status = 'error', status_reason = %(reason)s, notice = %(notice)s,
       last_error = %(error)s, updated_at = now()
 WHERE user_id = %(user_id)s
"""

# A connection the worker cannot use for a reason the operator can fix (a key missing from
# MCSYNC_ENCRYPTION_KEYS, a token not yet bound): paused, probed like a failing one, each probe
# a failure more, so the delay grows 1 s, 2 s, 4 s... to the cap instead of spinning.
PAUSE_UNUSABLE = """
UPDATE mcsync.mailchimp_connections
   SET sync_status = 'paused', status_reason = %(reason)s, notice = %(notice)s,
       last_error = %(error)s, consecutive_failures = consecutive_failures + 1,
       next_probe_at = now() + make_interval(secs => %(probe_in)s), updated_at = now()
 WHERE user_id = %(user_id)s AND sync_status <> 'error'
"""

# --- operator view -----------------------------------------------------------------------------

STATUS_ROWS = """
SELECT c.user_id, c.account_name, c.audience_id, c.audience_name, c.sync_status,
       c.status_reason, c.notice,
       c.last_error, c.last_sync_at, c.consecutive_failures, c.throttled_count,
       (SELECT count(*) FROM mcsync.mailchimp_sync_queue q WHERE q.user_id = c.user_id)
       + (SELECT coalesce(sum(cardinality(b.contact_ids)), 0)
            FROM mcsync.mailchimp_sync_bulk b WHERE b.user_id = c.user_id) AS pending,
       (SELECT extract(epoch FROM now() - min(q.enqueued_at))
          FROM mcsync.mailchimp_sync_queue q WHERE q.user_id = c.user_id) AS oldest_pending_seconds,
       (SELECT count(*) FROM mcsync.mailchimp_rejected_contacts r
         WHERE r.user_id = c.user_id AND r.severity = 'error') AS rejected,
       (SELECT count(*) FROM mcsync.mailchimp_rejected_contacts r
         WHERE r.user_id = c.user_id AND r.severity = 'warning') AS warnings
  FROM mcsync.mailchimp_connections c
 ORDER BY c.connected_at, c.user_id
"""

# --- web: OAuth state, Sync Now runs, reconciliation ------------------------------------------
# (owned by the web side: mcsync.web and mcsync.reconcile)

# A spent state: no row inserted means it was spent before (a replay).
CONSUME_OAUTH_STATE = """
INSERT INTO mcsync.mcsync_oauth_states (nonce, user_id, expires_at)
VALUES (%(nonce)s, %(user_id)s, %(expires_at)s)
ON CONFLICT (nonce) DO NOTHING
"""

# Once a state's expiry has passed, its signature check refuses it anyway: the row is dead.
PRUNE_OAUTH_STATES = (
    "DELETE FROM mcsync.mcsync_oauth_states WHERE expires_at < now() - interval '1 hour'"
)

PENDING_COUNT = "SELECT count(*) FROM mcsync.mailchimp_sync_queue WHERE user_id = %(user_id)s"

# Start (or restart) the user's reconciliation unless one was asked for less than
# `min_interval` seconds ago. Returns no row when refused; the hourly limit lives here.
# `requested_at` is when the user last asked (their hourly limit counts from it): a run started
# by an operator (`mcsync sync-now`) or by connecting (`by_user` false) leaves it as it was,
# and a first such row reads as asked long ago.
START_RECONCILIATION = """
INSERT INTO mcsync.mcsync_reconciliations AS r (user_id, audience_id, requested_at)
VALUES (%(user_id)s, %(audience_id)s,
        CASE WHEN %(by_user)s THEN now() ELSE 'epoch'::timestamptz END)
ON CONFLICT (user_id) DO UPDATE SET
    audience_id = excluded.audience_id,
    requested_at = CASE WHEN %(by_user)s THEN now() ELSE r.requested_at END,
    next_offset = 0, queued = 0,
    lease_owner = NULL, lease_until = NULL, finished_at = NULL, error = NULL
 WHERE r.requested_at <= now() - make_interval(secs => %(min_interval)s)
RETURNING r.requested_at
"""

RECONCILIATION_RETRY_AFTER = """
SELECT greatest(0, ceil(extract(epoch FROM
       requested_at + make_interval(secs => %(min_interval)s) - now())))::int AS seconds
  FROM mcsync.mcsync_reconciliations WHERE user_id = %(user_id)s
"""

GET_RECONCILIATION = "SELECT * FROM mcsync.mcsync_reconciliations WHERE user_id = %(user_id)s"

CLEAR_RECONCILE_SEEN = "DELETE FROM mcsync.mcsync_reconcile_seen WHERE user_id = %(user_id)s"

# Take (or take over, once the holder's lease has run out) an unfinished run.
CLAIM_RECONCILIATION = """
UPDATE mcsync.mcsync_reconciliations
   SET lease_owner = %(owner)s, lease_until = now() + make_interval(secs => %(lease_seconds)s)
 WHERE user_id = %(user_id)s AND finished_at IS NULL
   AND (lease_until IS NULL OR lease_until < now() OR lease_owner = %(owner)s)
RETURNING *
"""

# Unfinished runs whose runner is gone (crashed, or never started): the sweeper resumes them.
STALE_RECONCILIATIONS = """
SELECT user_id FROM mcsync.mcsync_reconciliations
 WHERE finished_at IS NULL AND (lease_until IS NULL OR lease_until < now())
 ORDER BY requested_at
"""

# A page is done: progress, counts and lease move together, and only for the lease holder of a
# run whose audience is still the connection's (a disconnect or an audience change stops it).
ADVANCE_RECONCILIATION = """
UPDATE mcsync.mcsync_reconciliations r
   SET next_offset = %(next_offset)s, queued = queued + %(queued)s,
       lease_until = now() + make_interval(secs => %(lease_seconds)s)
 WHERE r.user_id = %(user_id)s AND r.lease_owner = %(owner)s AND r.finished_at IS NULL
   AND EXISTS (SELECT 1 FROM mcsync.mailchimp_connections c
                WHERE c.user_id = r.user_id AND c.audience_id = r.audience_id)
"""

RECORD_RECONCILE_SEEN = """
INSERT INTO mcsync.mcsync_reconcile_seen (user_id, email_hash)
SELECT %(user_id)s, h FROM unnest(%(hashes)s::text[]) AS h
ON CONFLICT DO NOTHING
"""

RECONCILE_SEEN = "SELECT email_hash FROM mcsync.mcsync_reconcile_seen WHERE user_id = %(user_id)s"

FINISH_RECONCILIATION = """
UPDATE mcsync.mcsync_reconciliations
   SET finished_at = now(), lease_owner = NULL, lease_until = NULL, error = %(error)s,
       queued = queued + %(queued)s
 WHERE user_id = %(user_id)s AND finished_at IS NULL
   AND (lease_owner = %(owner)s OR %(owner)s IS NULL)
"""

MARK_FULL_SYNCED = """
UPDATE mcsync.mailchimp_connections SET last_full_sync_at = now(), updated_at = now()
 WHERE user_id = %(user_id)s AND audience_id = %(audience_id)s
"""

USER_CONTACTS = """
SELECT id, email, merge_fields, tags FROM mcsync.source_contacts WHERE user_id = %(user_id)s
"""

AUDIENCE_LEDGER = """
SELECT email_hash, email, fields_hash, tags, maybe_tags, status, archived, archive_status,
       pending_rename_from
  FROM mcsync.mailchimp_members
 WHERE user_id = %(user_id)s AND audience_id = %(audience_id)s
"""

AUDIENCE_LINKS = """
SELECT contact_id, email_hash, changed_at FROM mcsync.mailchimp_contact_links
 WHERE user_id = %(user_id)s AND audience_id = %(audience_id)s AND email_hash IS NOT NULL
"""

PENDING_CHANGES = """
SELECT contact_id, changed_at FROM mcsync.mailchimp_sync_queue WHERE user_id = %(user_id)s
"""

USER_REJECTIONS = """
SELECT contact_id, severity, field FROM mcsync.mailchimp_rejected_contacts
 WHERE user_id = %(user_id)s
"""

# Contacts whose member differs: make them due now. A resync is not a change, so the row's
# changed_at (the planner's "most recently changed" clock) is left alone.
QUEUE_RESYNC = """
INSERT INTO mcsync.mailchimp_sync_queue AS q (user_id, contact_id, op)
SELECT %(user_id)s, id, 'resync' FROM unnest(%(ids)s::uuid[]) AS id
ON CONFLICT (user_id, contact_id) DO UPDATE
   SET version = q.version + 1, next_retry_at = now()
"""

# Contacts (or orphan placeholders) whose member must be archived.
QUEUE_DELETES = """
INSERT INTO mcsync.mailchimp_sync_queue AS q (user_id, contact_id, op, email)
SELECT %(user_id)s, d.id, 'delete', d.email
  FROM unnest(%(ids)s::uuid[], %(emails)s::text[]) AS d(id, email)
ON CONFLICT (user_id, contact_id) DO UPDATE
   SET version = q.version + 1, next_retry_at = now(), email = coalesce(q.email, excluded.email)
"""

# An owned member with no contact linked to it any more gets a placeholder contact id linked to
# it, so the worker's ordinary "contact deleted" path archives it (see reconcile.py).
ADOPT_ORPHANS = """
INSERT INTO mcsync.mailchimp_contact_links (user_id, contact_id, audience_id, email_hash)
SELECT %(user_id)s, o.id, %(audience_id)s, o.email_hash
  FROM unnest(%(ids)s::uuid[], %(hashes)s::text[]) AS o(id, email_hash)
ON CONFLICT (user_id, contact_id) DO UPDATE SET
    audience_id = excluded.audience_id, email_hash = excluded.email_hash
"""

# The planner trusts the ledger; where Mailchimp was found to disagree, make the ledger say
# what Mailchimp actually has, so the worker sends what is missing.
CORRECT_LEDGER = """
UPDATE mcsync.mailchimp_members m
   SET fields_hash = CASE WHEN u.forget_fields THEN NULL ELSE m.fields_hash END,
       tags = coalesce((SELECT array_agg(t) FROM jsonb_array_elements_text(u.tags) t), '{}'),
       updated_at = now()
  FROM jsonb_to_recordset(%(rows)s::jsonb) AS u(email_hash text, forget_fields boolean, tags jsonb)
 WHERE m.user_id = %(user_id)s AND m.audience_id = %(audience_id)s
   AND m.email_hash = u.email_hash
"""


# Every statement above, rendered for this process's schema (a no-op for the default `mcsync`),
# with its catalog functions named `pg_catalog.` (mcsync.schema.qualify_catalog_calls).
for _name, _statement in list(globals().items()):
    if _name.isupper() and _name not in ("SCHEMA", "CHANNEL") and isinstance(_statement, str):
        globals()[_name] = qualify_catalog_calls(render(_statement, SCHEMA))
del _name, _statement
