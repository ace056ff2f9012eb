"""Every SQL statement mcsync runs, in one place, named for what it does.

Parameters are psycopg named placeholders. Array parameters are passed as Python lists."""

from __future__ import annotations

NOTIFY = "SELECT pg_notify('mcsync', '')"
CHANNEL = "mcsync"

# --- connections -----------------------------------------------------------------------------

GET_CONNECTION = "SELECT * FROM mailchimp_connections WHERE user_id = %(user_id)s"

ALL_CONNECTIONS = "SELECT * FROM mailchimp_connections ORDER BY connected_at, user_id"

UPSERT_CONNECTION = """
INSERT INTO mailchimp_connections AS c
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
    sync_status = 'active', notice = NULL, consecutive_failures = 0, last_error = NULL,
    next_probe_at = NULL, connected_at = now(), updated_at = now()
"""

SET_AUDIENCE = """
UPDATE mailchimp_connections
   SET audience_id = %(audience_id)s, audience_name = %(audience_name)s,
       double_optin = %(double_optin)s, updated_at = now()
 WHERE user_id = %(user_id)s
"""

DELETE_CONNECTION = "DELETE FROM mailchimp_connections WHERE user_id = %(user_id)s"
DELETE_USER_QUEUE = "DELETE FROM mailchimp_sync_queue WHERE user_id = %(user_id)s"
DELETE_USER_REJECTIONS = "DELETE FROM mailchimp_rejected_contacts WHERE user_id = %(user_id)s"
FORGET_CONTACT_LINKS = "DELETE FROM mailchimp_contact_links WHERE user_id = %(user_id)s"

ALL_ENCRYPTED_TOKENS = "SELECT user_id, access_token_encrypted FROM mailchimp_connections"
SET_ENCRYPTED_TOKEN = """
UPDATE mailchimp_connections SET access_token_encrypted = %(token)s, updated_at = now()
 WHERE user_id = %(user_id)s
"""

QUEUE_ALL_CONTACTS = """
INSERT INTO mailchimp_sync_queue AS q (user_id, contact_id, op)
SELECT user_id, id, 'resync' FROM contacts WHERE user_id = %(user_id)s
ON CONFLICT (user_id, contact_id) DO UPDATE
   SET version = q.version + 1, changed_at = now(), next_retry_at = now()
"""

# Contacts mcsync synced into the current audience whose rows are gone (deleted while the
# connection was away, when no trigger fired for them).
QUEUE_VANISHED_CONTACTS = """
INSERT INTO mailchimp_sync_queue AS q (user_id, contact_id, op, email)
SELECT l.user_id, l.contact_id, 'delete', m.email
  FROM mailchimp_contact_links l
  JOIN mailchimp_connections c ON c.user_id = l.user_id AND c.audience_id = l.audience_id
  LEFT JOIN mailchimp_members m
         ON m.user_id = l.user_id AND m.audience_id = l.audience_id AND m.email_hash = l.email_hash
 WHERE l.user_id = %(user_id)s
   AND NOT EXISTS (SELECT 1 FROM contacts ct WHERE ct.id = l.contact_id AND ct.user_id = l.user_id)
ON CONFLICT (user_id, contact_id) DO UPDATE
   SET version = q.version + 1, changed_at = now(), next_retry_at = now()
"""

# --- claiming ----------------------------------------------------------------------------------

# Lease accounts that have due work (or, when paused, a due probe) and no live lease. One
# worker per account at a time keeps the in-flight cap and per-contact order across workers.
CLAIM_ACCOUNTS = """
UPDATE mailchimp_connections c
   SET lease_owner = %(owner)s,
       lease_until = now() + make_interval(secs => %(lease_seconds)s)
 WHERE c.user_id IN (
       SELECT a.user_id FROM mailchimp_connections a
        WHERE a.audience_id IS NOT NULL
          AND (a.lease_until IS NULL OR a.lease_until < now() OR a.lease_owner = %(owner)s)
          AND NOT (a.user_id = ANY(%(busy)s::uuid[]))
          AND (   (a.sync_status = 'active' AND EXISTS (
                      SELECT 1 FROM mailchimp_sync_queue q
                       WHERE q.user_id = a.user_id AND q.next_retry_at <= now()))
               OR (a.sync_status = 'paused' AND a.next_probe_at <= now()))
        ORDER BY a.last_sync_at NULLS FIRST
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED)
RETURNING c.*
"""

RENEW_ACCOUNT_LEASE = """
UPDATE mailchimp_connections
   SET lease_until = now() + make_interval(secs => %(lease_seconds)s)
 WHERE user_id = %(user_id)s AND lease_owner = %(owner)s
"""

RELEASE_ACCOUNT = """
UPDATE mailchimp_connections SET lease_owner = NULL, lease_until = NULL
 WHERE user_id = %(user_id)s AND lease_owner = %(owner)s
"""

CLAIM_DUE_EVENTS = """
UPDATE mailchimp_sync_queue q
   SET locked_by = %(owner)s,
       locked_until = now() + make_interval(secs => %(lease_seconds)s)
 WHERE q.id IN (
       SELECT id FROM mailchimp_sync_queue
        WHERE user_id = %(user_id)s AND next_retry_at <= now()
          AND (locked_until IS NULL OR locked_until < now())
        ORDER BY next_retry_at, id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED)
RETURNING q.id, q.contact_id, q.op, q.email, q.version, q.attempts, q.changed_at
"""

# --- reading what the planner needs ------------------------------------------------------------

CONTACTS_BY_ID = """
SELECT id, email, first_name, last_name, phone, tags
  FROM contacts WHERE user_id = %(user_id)s AND id = ANY(%(ids)s::uuid[])
"""

CONTACTS_BY_EMAIL = """
SELECT id, email, first_name, last_name, phone, tags
  FROM contacts
 WHERE user_id = %(user_id)s AND lower(btrim(email)) = ANY(%(emails)s::text[])
"""

LINKS_BY_CONTACT = """
SELECT contact_id, email_hash, changed_at FROM mailchimp_contact_links
 WHERE user_id = %(user_id)s AND audience_id = %(audience_id)s
   AND contact_id = ANY(%(ids)s::uuid[])
"""

LEDGER_BY_HASH = """
SELECT email_hash, email, fields_hash, tags, status, archived FROM mailchimp_members
 WHERE user_id = %(user_id)s AND audience_id = %(audience_id)s
   AND email_hash = ANY(%(hashes)s::text[])
"""

# --- recording outcomes ------------------------------------------------------------------------

UPSERT_LEDGER = """
INSERT INTO mailchimp_members AS m
    (user_id, audience_id, email_hash, email, fields_hash, tags, status, archived)
SELECT %(user_id)s, %(audience_id)s, u.email_hash, u.email, u.fields_hash,
       coalesce((SELECT array_agg(t) FROM jsonb_array_elements_text(u.tags) t), '{}'),
       u.status, u.archived
  FROM jsonb_to_recordset(%(rows)s::jsonb)
       AS u(email_hash text, email text, fields_hash text, tags jsonb, status text, archived boolean)
ON CONFLICT (user_id, audience_id, email_hash) DO UPDATE SET
    email = excluded.email, fields_hash = excluded.fields_hash, tags = excluded.tags,
    status = coalesce(excluded.status, m.status), archived = excluded.archived,
    updated_at = now()
"""

DELETE_LEDGER = """
DELETE FROM mailchimp_members
 WHERE user_id = %(user_id)s AND audience_id = %(audience_id)s
   AND email_hash = ANY(%(hashes)s::text[])
"""

UPSERT_LINKS = """
INSERT INTO mailchimp_contact_links AS l (user_id, contact_id, audience_id, email_hash, changed_at)
SELECT %(user_id)s, u.contact_id, %(audience_id)s, u.email_hash, u.changed_at
  FROM jsonb_to_recordset(%(rows)s::jsonb)
       AS u(contact_id uuid, email_hash text, changed_at timestamptz)
ON CONFLICT (user_id, contact_id) DO UPDATE SET
    audience_id = excluded.audience_id, email_hash = excluded.email_hash,
    changed_at = excluded.changed_at
"""

DELETE_LINKS = """
DELETE FROM mailchimp_contact_links
 WHERE user_id = %(user_id)s AND contact_id = ANY(%(ids)s::uuid[])
"""

UPSERT_REJECTIONS = """
INSERT INTO mailchimp_rejected_contacts AS r
    (user_id, contact_id, email, severity, reason, field, detail)
SELECT %(user_id)s, u.contact_id, u.email, u.severity, u.reason, u.field, u.detail
  FROM jsonb_to_recordset(%(rows)s::jsonb)
       AS u(contact_id uuid, email text, severity text, reason text, field text, detail text)
ON CONFLICT (user_id, contact_id) DO UPDATE SET
    email = excluded.email, severity = excluded.severity, reason = excluded.reason,
    field = excluded.field, detail = excluded.detail, rejected_at = now()
"""

CLEAR_REJECTIONS = """
DELETE FROM mailchimp_rejected_contacts
 WHERE user_id = %(user_id)s AND contact_id = ANY(%(ids)s::uuid[])
"""

# Done: delete the row only if no newer change arrived while we worked on it.
COMPLETE_EVENTS = """
DELETE FROM mailchimp_sync_queue q
 USING unnest(%(ids)s::bigint[], %(versions)s::bigint[]) AS d(id, version)
 WHERE q.id = d.id AND q.version = d.version
"""

RELEASE_EVENTS = """
UPDATE mailchimp_sync_queue SET locked_by = NULL, locked_until = NULL
 WHERE id = ANY(%(ids)s::bigint[]) AND locked_by = %(owner)s
"""

RETRY_EVENTS = """
UPDATE mailchimp_sync_queue q
   SET attempts = q.attempts + 1,
       next_retry_at = now() + make_interval(secs => d.delay),
       last_error = d.error, locked_by = NULL, locked_until = NULL
  FROM unnest(%(ids)s::bigint[], %(delays)s::float8[], %(errors)s::text[]) AS d(id, delay, error)
 WHERE q.id = d.id
RETURNING q.id, q.attempts
"""

# Throttling is not a failure: reschedule without spending an attempt.
DEFER_EVENTS = """
UPDATE mailchimp_sync_queue
   SET next_retry_at = now() + make_interval(secs => %(delay)s),
       locked_by = NULL, locked_until = NULL
 WHERE id = ANY(%(ids)s::bigint[])
"""

# --- connection health -------------------------------------------------------------------------

MARK_SYNCED = """
UPDATE mailchimp_connections
   SET last_sync_at = now(), consecutive_failures = 0, updated_at = now()
 WHERE user_id = %(user_id)s
"""

COUNT_THROTTLED = """
UPDATE mailchimp_connections
   SET throttled_count = throttled_count + 1, updated_at = now()
 WHERE user_id = %(user_id)s
"""

RECORD_FAILURE = """
UPDATE mailchimp_connections
   SET consecutive_failures = consecutive_failures + 1, last_error = %(error)s, updated_at = now()
 WHERE user_id = %(user_id)s
"""

PAUSE_CONNECTION = """
UPDATE mailchimp_connections
   SET sync_status = 'paused', notice = %(notice)s, last_error = %(error)s,
       next_probe_at = now() + make_interval(secs => %(probe_in)s), updated_at = now()
 WHERE user_id = %(user_id)s AND sync_status = 'active'
"""

RESCHEDULE_PROBE = """
UPDATE mailchimp_connections
   SET next_probe_at = now() + make_interval(secs => %(probe_in)s),
       last_error = %(error)s, updated_at = now()
 WHERE user_id = %(user_id)s
"""

RESUME_CONNECTION = """
UPDATE mailchimp_connections
   SET sync_status = 'active', notice = NULL, next_probe_at = NULL,
       consecutive_failures = 0, updated_at = now()
 WHERE user_id = %(user_id)s
"""

MAKE_USER_EVENTS_DUE = """
UPDATE mailchimp_sync_queue SET next_retry_at = now(), attempts = 0
 WHERE user_id = %(user_id)s
"""

MARK_CONNECTION_ERROR = """
UPDATE mailchimp_connections
   SET sync_status = 'error', notice = %(notice)s, last_error = %(error)s, updated_at = now()
 WHERE user_id = %(user_id)s
"""

# --- operator view -----------------------------------------------------------------------------

STATUS_ROWS = """
SELECT c.user_id, c.account_name, c.audience_id, c.audience_name, c.sync_status, c.notice,
       c.last_error, c.last_sync_at, c.consecutive_failures, c.throttled_count,
       (SELECT count(*) FROM mailchimp_sync_queue q WHERE q.user_id = c.user_id) AS pending,
       (SELECT extract(epoch FROM now() - min(q.enqueued_at))
          FROM mailchimp_sync_queue q WHERE q.user_id = c.user_id) AS oldest_pending_seconds,
       (SELECT count(*) FROM mailchimp_rejected_contacts r
         WHERE r.user_id = c.user_id AND r.severity = 'error') AS rejected,
       (SELECT count(*) FROM mailchimp_rejected_contacts r
         WHERE r.user_id = c.user_id AND r.severity = 'warning') AS warnings
  FROM mailchimp_connections c
 ORDER BY c.connected_at, c.user_id
"""
