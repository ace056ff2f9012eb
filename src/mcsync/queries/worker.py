"""The worker's statements: claiming accounts and rows, reading what the planner needs,
recording outcomes, the connection's health (run by mcsync.worker.store). Written for the
default schema; see mcsync.queries."""

from __future__ import annotations

# The worker's pooled connections' session setting (see mcsync.worker.store.configure_connection).
SESSION_SETTINGS = "SET enable_seqscan = off"

# The listener's dedicated connection: the triggers' hint, and a round trip in a quiet spell.
LISTEN = "LISTEN mcsync"
PING = "SELECT 1"

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

# The worker reads these rows (and CLAIM_DUE_EVENTS') by position (mcsync.worker.store): a
# column moved here moves in the store too.

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

# Hashes are stored as 16 bytes (sql/010) and read and written as 32 hex digits: these
# statements convert (pg_catalog.encode / decode), so the planner and the Mailchimp paths keep
# one spelling. A member in doubt is NULL when there is none.
LINKS_BY_CONTACT = """
SELECT l.contact_id, pg_catalog.encode(l.email_hash, 'hex') AS email_hash,
       CASE WHEN l.maybe_hashes IS NOT NULL
            THEN ARRAY(SELECT pg_catalog.encode(h, 'hex') FROM unnest(l.maybe_hashes) AS h)
       END AS maybe_hashes,
       l.changed_at
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
SELECT pg_catalog.encode(email_hash, 'hex') AS email_hash, email,
       pg_catalog.encode(fields_hash, 'hex') AS fields_hash, tags, maybe_tags, status, archived,
       archive_status, pending_rename_from
  FROM unnest(%(hashes)b::text[]) AS k(hash),
       LATERAL (SELECT * FROM mcsync.mailchimp_members
                 WHERE user_id = %(user_id)s AND audience_id = %(audience_id)s
                   AND email_hash = pg_catalog.decode(k.hash, 'hex') OFFSET 0) m
"""

# --- recording outcomes ------------------------------------------------------------------------

# Typed arrays, one per column (mcsync.rows.ledger_params), not a JSON document per row: no
# JSON to parse, no sub-select per row to rebuild the tag arrays (each member's tags are a
# slice of one flat array). An empty `maybe_tags` is stored as NULL (sql/010).
UPSERT_LEDGER = """
INSERT INTO mcsync.mailchimp_members AS m
    (user_id, audience_id, email_hash, email, fields_hash, tags, maybe_tags, status, archived,
     archive_status, pending_rename_from)
SELECT %(user_id)s, %(audience_id)s, pg_catalog.decode(u.email_hash, 'hex'), u.email,
       pg_catalog.decode(u.fields_hash, 'hex'),
       (%(tags)b::text[])[u.tags_from:u.tags_to],
       CASE WHEN u.maybe_to >= u.maybe_from
            THEN (%(maybe_tags)b::text[])[u.maybe_from:u.maybe_to] END,
       u.status, u.archived, u.archive_status, u.pending_rename_from
  FROM unnest(%(hashes)b::text[], %(emails)b::text[], %(fields_hashes)b::text[],
              %(tags_from)b::int4[], %(tags_to)b::int4[], %(maybe_from)b::int4[],
              %(maybe_to)b::int4[], %(statuses)b::text[], %(archived)b::bool[],
              %(archive_statuses)b::text[], %(renames)b::text[])
       AS u(email_hash, email, fields_hash, tags_from, tags_to, maybe_from, maybe_to, status,
            archived, archive_status, pending_rename_from)
ON CONFLICT (user_id, audience_id, email_hash) DO UPDATE SET
    email = excluded.email, fields_hash = excluded.fields_hash, tags = excluded.tags,
    maybe_tags = excluded.maybe_tags, archive_status = excluded.archive_status,
    pending_rename_from = excluded.pending_rename_from,
    status = coalesce(excluded.status, m.status), archived = excluded.archived
"""

MARK_ARCHIVING = """
UPDATE mcsync.mailchimp_members SET archive_status = %(status)s
 WHERE user_id = %(user_id)s AND audience_id = %(audience_id)s
   AND email_hash = pg_catalog.decode(%(email_hash)s, 'hex')
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
   AND email_hash = ANY(ARRAY(SELECT pg_catalog.decode(h, 'hex')
                                FROM unnest(%(hashes)s::text[]) AS h))
"""

UPSERT_LINKS = """
INSERT INTO mcsync.mailchimp_contact_links AS l
    (user_id, contact_id, audience_id, email_hash, changed_at)
SELECT %(user_id)s, u.contact_id, %(audience_id)s, pg_catalog.decode(u.email_hash, 'hex'),
       u.changed_at
  FROM unnest(%(ids)b::uuid[], %(hashes)b::text[], %(changed)b::timestamptz[])
       AS u(contact_id, email_hash, changed_at)
ON CONFLICT (user_id, contact_id) DO UPDATE SET
    audience_id = excluded.audience_id, email_hash = excluded.email_hash,
    maybe_hashes = NULL, changed_at = excluded.changed_at
"""

# Before the calls: the members these contacts may become (see mcsync.ledger.write_ahead_ledger).
WRITE_AHEAD_LINKS = """
INSERT INTO mcsync.mailchimp_contact_links AS l (user_id, contact_id, audience_id, maybe_hashes)
SELECT %(user_id)s, u.contact_id, %(audience_id)s, ARRAY[pg_catalog.decode(u.email_hash, 'hex')]
  FROM unnest(%(ids)b::uuid[], %(hashes)b::text[]) AS u(contact_id, email_hash)
ON CONFLICT (user_id, contact_id) DO UPDATE SET
    -- NULL (nothing in doubt) || {hash} is {hash}.
    maybe_hashes = CASE WHEN excluded.maybe_hashes[1] = ANY(l.maybe_hashes) THEN l.maybe_hashes
                        ELSE l.maybe_hashes || excluded.maybe_hashes END
"""

DELETE_LINKS = """
DELETE FROM mcsync.mailchimp_contact_links
 WHERE user_id = %(user_id)s AND contact_id = ANY(%(ids)s::uuid[])
"""

# Typed arrays unnested together, as the ledger's and links' writes (no JSON document).
UPSERT_REJECTIONS = """
INSERT INTO mcsync.mailchimp_rejected_contacts AS r
    (user_id, contact_id, email, severity, reason, field, detail)
SELECT %(user_id)s, u.contact_id::uuid, u.email, u.severity, u.reason, u.field, u.detail
  FROM unnest(%(ids)b::text[], %(emails)b::text[], %(severities)b::text[], %(reasons)b::text[],
              %(fields)b::text[], %(details)b::text[])
       AS u(contact_id, email, severity, reason, field, detail)
ON CONFLICT (user_id, contact_id) DO UPDATE SET
    email = excluded.email, severity = excluded.severity, reason = excluded.reason,
    field = excluded.field, detail = excluded.detail, rejected_at = now()
"""

# Every contact a pass synced without a warning (nearly all of them): its array in binary too.
CLEAR_REJECTIONS = """
DELETE FROM mcsync.mailchimp_rejected_contacts
 WHERE user_id = %(user_id)s AND contact_id = ANY(%(ids)b::uuid[])
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

# Only an active connection pauses: of the account's concurrent passes that spend a row's last
# attempt, the one whose UPDATE counts a row logs and records the pause.
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

# Only a change of state (the account's concurrent passes may each see the same 401): the row
# count tells the one that changed it, which alone logs and records the event.
MARK_CONNECTION_ERROR = """
UPDATE mcsync.mailchimp_connections
   SET sync_status = 'error', status_reason = %(reason)s, notice = %(notice)s,
       last_error = %(error)s, updated_at = now()
 WHERE user_id = %(user_id)s
   AND (sync_status, status_reason) IS DISTINCT FROM ('error', %(reason)s)
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
