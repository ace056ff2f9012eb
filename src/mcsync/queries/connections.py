"""The statements of connecting, choosing an audience, disconnecting, the tokens' rotation, the
operator's status and the web side's OAuth states (run by mcsync.connections, mcsync.admin_store,
the worker's store and the CLI's stores). Written for the default schema; see mcsync.queries."""

from __future__ import annotations

# The hint every writer sends when work is due (the triggers send it too); the channel is
# mcsync.queries.CHANNEL.
NOTIFY = "SELECT pg_notify('mcsync', '')"

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


# --- operator view -----------------------------------------------------------------------------

# The backlog, one definition for every reader (`mcsync status` and the metrics, the operator's
# page, the widget's status): per user, the queued changes plus the contacts still inside an
# import (`mailchimp_sync_bulk.contact_ids`, not yet turned into queue rows), and when the
# oldest of them was enqueued. The others take it as a subquery (a filter on user_id is pushed
# into both branches, so one user's backlog reads only that user's rows).
BACKLOG_BY_USER = """
SELECT user_id, sum(pending)::bigint AS pending, min(oldest) AS oldest_at
  FROM (SELECT user_id, count(*) AS pending, min(enqueued_at) AS oldest
          FROM mcsync.mailchimp_sync_queue GROUP BY user_id
        UNION ALL
        SELECT user_id, sum(cardinality(contact_ids)), min(enqueued_at)
          FROM mcsync.mailchimp_sync_bulk GROUP BY user_id) AS parts
 GROUP BY user_id
"""

STATUS_ROWS = f"""
SELECT c.user_id, c.account_name, c.audience_id, c.audience_name, c.sync_status,
       c.status_reason, c.notice,
       c.last_error, c.last_sync_at, c.consecutive_failures, c.throttled_count,
       coalesce(k.pending, 0) AS pending,
       extract(epoch FROM now() - k.oldest_at) AS oldest_pending_seconds,
       (SELECT count(*) FROM mcsync.mailchimp_rejected_contacts r
         WHERE r.user_id = c.user_id AND r.severity = 'error') AS rejected,
       (SELECT count(*) FROM mcsync.mailchimp_rejected_contacts r
         WHERE r.user_id = c.user_id AND r.severity = 'warning') AS warnings
  FROM mcsync.mailchimp_connections c
  LEFT JOIN ({BACKLOG_BY_USER}) k ON k.user_id = c.user_id
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

# One user's backlog, as BACKLOG_BY_USER counts it (an import in progress included).
PENDING_COUNT = f"""
SELECT coalesce((SELECT pending FROM ({BACKLOG_BY_USER}) k WHERE k.user_id = %(user_id)s), 0)
       AS count
"""
