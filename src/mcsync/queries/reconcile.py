"""Reconciliation's statements: Sync Now runs, `mcsync sync-now` and `mcsync verify` (run by
mcsync.reconcile_store). Written for the default schema; see mcsync.queries."""

from __future__ import annotations

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

# Hashes are stored as 16 bytes, read and written as 32 hex digits (sql/010).
AUDIENCE_LEDGER = """
SELECT pg_catalog.encode(email_hash, 'hex') AS email_hash, email,
       pg_catalog.encode(fields_hash, 'hex') AS fields_hash, tags, maybe_tags, status, archived,
       archive_status, pending_rename_from
  FROM mcsync.mailchimp_members
 WHERE user_id = %(user_id)s AND audience_id = %(audience_id)s
"""

AUDIENCE_LINKS = """
SELECT contact_id, pg_catalog.encode(email_hash, 'hex') AS email_hash, changed_at
  FROM mcsync.mailchimp_contact_links
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
SELECT %(user_id)s, o.id, %(audience_id)s, pg_catalog.decode(o.email_hash, 'hex')
  FROM unnest(%(ids)s::uuid[], %(hashes)s::text[]) AS o(id, email_hash)
ON CONFLICT (user_id, contact_id) DO UPDATE SET
    audience_id = excluded.audience_id, email_hash = excluded.email_hash
"""

# The planner trusts the ledger; where Mailchimp was found to disagree, make the ledger say
# what Mailchimp actually has, so the worker sends what is missing.
CORRECT_LEDGER = """
UPDATE mcsync.mailchimp_members m
   SET fields_hash = CASE WHEN u.forget_fields THEN NULL ELSE m.fields_hash END,
       tags = coalesce((SELECT array_agg(t) FROM jsonb_array_elements_text(u.tags) t), '{}')
  FROM jsonb_to_recordset(%(rows)s::jsonb) AS u(email_hash text, forget_fields boolean, tags jsonb)
 WHERE m.user_id = %(user_id)s AND m.audience_id = %(audience_id)s
   AND m.email_hash = pg_catalog.decode(u.email_hash, 'hex')
"""
