-- TRUNCATE contacts fires no row trigger, so without this it left every member mcsync created
-- subscribed with no contact behind it. A statement-level trigger queues a delete for every
-- contact mcsync linked, for every connected user: the worker archives the members mcsync owns
-- (its ledger says which) and leaves members from elsewhere untouched, as for a DELETE.
-- AFTER TRUNCATE the table is empty, so every linked contact has vanished.
CREATE OR REPLACE FUNCTION mcsync.mcsync_enqueue_truncated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO mcsync.mailchimp_sync_queue AS q (user_id, contact_id, op, email)
    SELECT l.user_id, l.contact_id, 'delete', m.email
      FROM mcsync.mailchimp_contact_links l
      JOIN mcsync.mailchimp_connections c
        ON c.user_id = l.user_id AND c.audience_id = l.audience_id
      LEFT JOIN mcsync.mailchimp_members m
             ON m.user_id = l.user_id AND m.audience_id = l.audience_id
            AND m.email_hash = l.email_hash
    ON CONFLICT (user_id, contact_id) DO UPDATE
       SET op = 'delete', version = q.version + 1, changed_at = now(), next_retry_at = now(),
           attempts = 0, email = coalesce(q.email, excluded.email);
    IF FOUND THEN
        PERFORM pg_notify('mcsync', '');
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER mcsync_contacts_truncated
    AFTER TRUNCATE ON contacts
    FOR EACH STATEMENT EXECUTE FUNCTION mcsync.mcsync_enqueue_truncated();

CALL mcsync.lock_down();
