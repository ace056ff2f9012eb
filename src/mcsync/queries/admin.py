"""The SQL of the operator's view (`/admin`) and of the health history, named for what it does.

Written like the other statements of `mcsync.queries` (named placeholders, every mcsync object
schema-qualified, for the default schema), kept in a module of its own because only the
operator's page and the health history use it. The overview is ONE statement per page: totals,
the filtered count and the page's rows come back together, so a page costs one round trip
however many connections there are (docs/operators.md has the figure at 10,000)."""

from __future__ import annotations

# Lower-case: a fragment here, not a second statement of that name (mcsync.queries.written).
from mcsync.queries.connections import BACKLOG_BY_USER as backlog_by_user

HEALTH_EVENTS_KEPT = 50  # per connection; older ones are trimmed as new ones are written

# One health event: a repeat of the connection's latest event (same kind, same actor) bumps
# it, anything else is a new row; then all but the newest HEALTH_EVENTS_KEPT rows go. (The
# DELETE sees the table as it was before this statement, so it keeps KEPT - 1 older rows.)
RECORD_HEALTH_EVENT = """
WITH latest AS (
    SELECT id, kind, actor FROM mcsync.mailchimp_health_events
     WHERE user_id = %(user_id)s ORDER BY id DESC LIMIT 1
), bumped AS (
    UPDATE mcsync.mailchimp_health_events e
       SET repeats = e.repeats + 1, last_at = pg_catalog.now(), detail = %(detail)s
      FROM latest l
     WHERE e.id = l.id AND l.kind = %(kind)s AND l.actor IS NOT DISTINCT FROM %(actor)s
    RETURNING e.id
), added AS (
    INSERT INTO mcsync.mailchimp_health_events (user_id, kind, actor, detail)
    SELECT %(user_id)s, %(kind)s, %(actor)s, %(detail)s
     WHERE NOT EXISTS (SELECT 1 FROM bumped)
    RETURNING id
)
DELETE FROM mcsync.mailchimp_health_events
 WHERE user_id = %(user_id)s
   AND id <= (SELECT id FROM mcsync.mailchimp_health_events
               WHERE user_id = %(user_id)s ORDER BY id DESC
              OFFSET %(keep)s - 1 LIMIT 1)
"""

HEALTH_EVENTS = """
SELECT kind, actor, detail, at, last_at, repeats FROM mcsync.mailchimp_health_events
 WHERE user_id = %(user_id)s ORDER BY id DESC LIMIT %(limit)s
"""

# The overview. Sort orders are chosen from mcsync.admin_store.SORTS (fixed text, never the
# request's) and put where /*ORDER*/ stands. Per-connection figures come from one aggregate per
# table (not a subquery per connection), so the cost is a few scans whatever the page.
# "state since": the latest health event that put the connection in its current state, or
# when it was connected, whichever is later.
OVERVIEW = f"""
WITH backlog AS ({backlog_by_user}), rejected AS (
    SELECT user_id, pg_catalog.count(*) FILTER (WHERE severity = 'error') AS rejected,
           pg_catalog.count(*) FILTER (WHERE severity = 'warning') AS warnings
      FROM mcsync.mailchimp_rejected_contacts GROUP BY user_id
), runs AS (
    SELECT user_id FROM mcsync.mcsync_reconciliations WHERE finished_at IS NULL
), stats AS (
    SELECT c.user_id, c.account_name, c.audience_id, c.audience_name, c.sync_status,
           c.status_reason, c.last_error, c.last_sync_at, c.connected_at, c.updated_at,
           coalesce(k.pending, 0) AS backlog, k.oldest_at AS oldest_pending_at,
           coalesce(r.rejected, 0) AS rejected, coalesce(r.warnings, 0) AS warnings,
           (s.user_id IS NOT NULL) AS sync_now_running
      FROM mcsync.mailchimp_connections c
      LEFT JOIN backlog k ON k.user_id = c.user_id
      LEFT JOIN rejected r ON r.user_id = c.user_id
      LEFT JOIN runs s ON s.user_id = c.user_id
), matched AS (
    SELECT *, pg_catalog.row_number() OVER (ORDER BY /*ORDER*/, user_id) AS position
      FROM stats
     WHERE (%(state)s::text IS NULL OR sync_status = %(state)s::text)
       AND (%(search)s::text = ''
            OR user_id::text LIKE pg_catalog.lower(%(pattern)s::text) || '%%'
            OR audience_id = %(search)s::text
            OR audience_name ILIKE '%%' || %(pattern)s::text || '%%'
            OR account_name ILIKE '%%' || %(pattern)s::text || '%%')
), page AS (
    SELECT * FROM matched WHERE position > %(offset)s AND position <= %(offset)s + %(limit)s
)
SELECT
    (SELECT pg_catalog.jsonb_build_object(
                'connections', pg_catalog.count(*),
                'active', pg_catalog.count(*) FILTER (WHERE sync_status = 'active'),
                'paused', pg_catalog.count(*) FILTER (WHERE sync_status = 'paused'),
                'error', pg_catalog.count(*) FILTER (WHERE sync_status = 'error'),
                'pending', coalesce(pg_catalog.sum(backlog), 0),
                'oldest_pending_seconds',
                    extract(epoch FROM pg_catalog.now() - pg_catalog.min(oldest_pending_at)),
                'rejected', coalesce(pg_catalog.sum(rejected), 0),
                'sync_now_running', pg_catalog.count(*) FILTER (WHERE sync_now_running))
       FROM stats) AS totals,
    (SELECT pg_catalog.count(*) FROM matched) AS matched,
    (SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                'user_id', p.user_id, 'account_name', p.account_name,
                'audience_id', p.audience_id, 'audience_name', p.audience_name,
                'sync_status', p.sync_status, 'status_reason', p.status_reason,
                'state_since', greatest(p.connected_at, e.at),
                'backlog', p.backlog,
                'oldest_pending_seconds',
                    extract(epoch FROM pg_catalog.now() - p.oldest_pending_at),
                'last_sync_at', p.last_sync_at, 'last_error', p.last_error,
                'rejected', p.rejected, 'warnings', p.warnings,
                'sync_now_running', p.sync_now_running) ORDER BY p.position), '[]'::jsonb)
       FROM page p
       LEFT JOIN LATERAL (
            SELECT h.last_at AS at FROM mcsync.mailchimp_health_events h
             WHERE h.user_id = p.user_id
               AND h.kind = CASE p.sync_status WHEN 'active' THEN 'resumed' ELSE p.sync_status END
             ORDER BY h.id DESC LIMIT 1) e ON true) AS rows
"""

# One user: pending work by kind (queue rows by operation; those retrying, those waiting for a
# retry time; contacts still inside an import).
PENDING_BY_KIND = """
SELECT op AS kind, pg_catalog.count(*) AS contacts,
       pg_catalog.count(*) FILTER (WHERE attempts > 0) AS retrying,
       pg_catalog.count(*) FILTER (WHERE next_retry_at > pg_catalog.now()) AS waiting,
       extract(epoch FROM pg_catalog.now() - pg_catalog.min(enqueued_at)) AS oldest_seconds
  FROM mcsync.mailchimp_sync_queue WHERE user_id = %(user_id)s
 GROUP BY op
UNION ALL
SELECT 'import', pg_catalog.sum(pg_catalog.cardinality(contact_ids)), 0, 0,
       extract(epoch FROM pg_catalog.now() - pg_catalog.min(enqueued_at))
  FROM mcsync.mailchimp_sync_bulk WHERE user_id = %(user_id)s
HAVING pg_catalog.count(*) > 0
ORDER BY 1
"""

REJECTED_CONTACTS = """
SELECT contact_id, email, severity, reason, field, detail, rejected_at
  FROM mcsync.mailchimp_rejected_contacts
 WHERE user_id = %(user_id)s
 ORDER BY severity, rejected_at DESC
 LIMIT %(limit)s
"""

# Retry: make every refused contact due again as a resync (not a change of the contact). The
# worker clears the rejection when Mailchimp accepts it, or records the new reason.
RETRY_REJECTED = """
INSERT INTO mcsync.mailchimp_sync_queue AS q (user_id, contact_id, op)
SELECT user_id, contact_id, 'resync' FROM mcsync.mailchimp_rejected_contacts
 WHERE user_id = %(user_id)s AND severity = 'error'
ON CONFLICT (user_id, contact_id) DO UPDATE
   SET version = q.version + 1, next_retry_at = pg_catalog.now(), attempts = 0
"""
