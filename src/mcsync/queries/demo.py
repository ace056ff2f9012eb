"""The demo's statements (run by mcsync.demo_store): `mcsync demo` plays the app, so these are
the only statements here that name the app's table (the example `contacts`,
sql/example_contacts.sql); the rest read mcsync's tables to show what the worker did. No
mcsync process runs them. Written for the default schema; see mcsync.queries."""

from __future__ import annotations

# --- the app's side, as the demo plays it ---------------------------------------------------

ADD_CONTACT = """
INSERT INTO contacts (user_id, first_name, last_name, email, phone, tags)
VALUES (%(user_id)s, %(first_name)s, %(last_name)s, %(email)s, %(phone)s, %(tags)s)
RETURNING id
"""
ADD_SAMPLE_CONTACT = """
INSERT INTO contacts (user_id, first_name, last_name, email, phone, tags, notes)
VALUES (%(user_id)s, %(first_name)s, %(last_name)s, %(email)s, %(phone)s, %(tags)s, %(notes)s)
"""
EDIT_CONTACT = """
UPDATE contacts SET first_name = %(first_name)s, last_name = %(last_name)s,
       email = %(email)s, phone = %(phone)s, tags = %(tags)s, updated_at = now()
 WHERE id = %(id)s AND user_id = %(user_id)s
"""
DELETE_CONTACT = "DELETE FROM contacts WHERE id = %(id)s AND user_id = %(user_id)s"

# `mcsync demo --once`: a coach's edits, one of them to a column mcsync does not sync.
TAG_ANA = "UPDATE contacts SET tags = array_append(tags, 'workshop') WHERE first_name = 'Ana'"
RENAME_CHLOE = (
    "UPDATE contacts SET email = 'chloe.dubois@coachmail.io' WHERE first_name = 'Chloé'"
)
NOTE_BEN = "UPDATE contacts SET notes = 'unsynced column: no API call' WHERE first_name = 'Ben'"

# The page's list: each contact, and why it is not synced (Mailchimp refused it), if so.
CONTACTS_SHOWN = """
SELECT c.id, c.first_name, c.last_name, c.email, c.phone, c.tags, r.reason AS not_synced
  FROM contacts c
  LEFT JOIN mcsync.mailchimp_rejected_contacts r
         ON r.user_id = c.user_id AND r.contact_id = c.id AND r.severity = 'error'
 WHERE c.user_id = %(user_id)s ORDER BY c.created_at, c.id
"""

# --- what the worker did ----------------------------------------------------------------------

QUEUE_HAS_WORK = "SELECT 1 FROM mcsync.mailchimp_sync_queue LIMIT 1"
ALL_REJECTIONS = "SELECT email, severity, reason FROM mcsync.mailchimp_rejected_contacts"
USER_REFUSALS = """
SELECT contact_id, email, reason FROM mcsync.mailchimp_rejected_contacts
 WHERE user_id = %(user_id)s AND severity = 'error'
"""
DEMO_CONNECTION = """
SELECT account_name, audience_id, audience_name, sync_status
  FROM mcsync.mailchimp_connections WHERE user_id = %(user_id)s
"""
