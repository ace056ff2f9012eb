-- mcsync 002: the functions behind the triggers on the app's contacts table. They are
-- statement-level with transition tables, so a 100,000-row import writes its queue rows in one
-- INSERT ... SELECT and sends one NOTIFY.
--
-- Since the source mapping (docs/mapping.md), the triggers, the index on the app's table and the
-- functions' final bodies are generated from the mapping by `mcsync migrate` (mcsync.source), in
-- the same transaction as the migrations: this file no longer names the app's table, so an app
-- whose contacts live elsewhere installs it too. The bodies below are those of the first
-- release, kept so 004 finds the functions it moves; the generator replaces them.

-- How mcsync compares addresses: ASCII whitespace trimmed, lowercased (the same rule as
-- mcsync.mirror.normalize_email). A function, so the index and the queries agree exactly.
CREATE FUNCTION mcsync_email_key(email text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT lower(btrim(email, E' \t\n\r\f\x0B')) $$;

-- SECURITY DEFINER with the search_path frozen at install time: the app's own role needs no
-- grant on mcsync's tables, and a caller cannot redirect the function to other tables.
CREATE FUNCTION mcsync_enqueue_inserted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    -- An import: one row per user holding the ids (see mailchimp_sync_bulk). New rows can't
    -- have pending events yet, so nothing is lost by not coalescing them here.
    IF EXISTS (SELECT 1 FROM mcsync_new_rows OFFSET 999) THEN
        INSERT INTO mailchimp_sync_bulk (user_id, contact_ids)
        SELECT n.user_id, array_agg(n.id)
          FROM mcsync_new_rows n
          JOIN mailchimp_connections c ON c.user_id = n.user_id
         GROUP BY n.user_id;
        IF FOUND THEN
            PERFORM pg_notify('mcsync', '');
        END IF;
        RETURN NULL;
    END IF;
    INSERT INTO mailchimp_sync_queue AS q (user_id, contact_id, op, email)
    SELECT n.user_id, n.id, 'upsert', NULL
      FROM mcsync_new_rows n
      JOIN mailchimp_connections c ON c.user_id = n.user_id
    ON CONFLICT (user_id, contact_id) DO UPDATE
       SET op = 'upsert', version = q.version + 1, changed_at = now();
    IF FOUND THEN
        PERFORM pg_notify('mcsync', '');
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION mcsync_enqueue_updated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    queued boolean := false;
BEGIN
    -- Contacts whose synced columns changed (or that moved to this user).
    INSERT INTO mailchimp_sync_queue AS q (user_id, contact_id, op, email)
    SELECT n.user_id, n.id, 'upsert', CASE WHEN o.user_id = n.user_id THEN o.email END
      FROM mcsync_new_rows n
      JOIN mcsync_old_rows o ON o.id = n.id
      JOIN mailchimp_connections c ON c.user_id = n.user_id
     WHERE (n.user_id, n.email, n.first_name, n.last_name, n.phone, n.tags)
           IS DISTINCT FROM (o.user_id, o.email, o.first_name, o.last_name, o.phone, o.tags)
    ON CONFLICT (user_id, contact_id) DO UPDATE
       SET op = 'upsert', version = q.version + 1, changed_at = now(),
           email = coalesce(q.email, excluded.email);
    queued := FOUND;

    -- A contact moved to another user is gone from its old user's audience.
    INSERT INTO mailchimp_sync_queue AS q (user_id, contact_id, op, email)
    SELECT o.user_id, o.id, 'delete', o.email
      FROM mcsync_old_rows o
      JOIN mcsync_new_rows n ON n.id = o.id
      JOIN mailchimp_connections c ON c.user_id = o.user_id
     WHERE n.user_id IS DISTINCT FROM o.user_id
    ON CONFLICT (user_id, contact_id) DO UPDATE
       SET op = 'delete', version = q.version + 1, changed_at = now(),
           email = coalesce(q.email, excluded.email);
    queued := queued OR FOUND;

    IF queued THEN
        PERFORM pg_notify('mcsync', '');
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION mcsync_enqueue_deleted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO mailchimp_sync_queue AS q (user_id, contact_id, op, email)
    SELECT o.user_id, o.id, 'delete', o.email
      FROM mcsync_old_rows o
      JOIN mailchimp_connections c ON c.user_id = o.user_id
    ON CONFLICT (user_id, contact_id) DO UPDATE
       SET op = 'delete', version = q.version + 1, changed_at = now(),
           email = coalesce(q.email, excluded.email);
    IF FOUND THEN
        PERFORM pg_notify('mcsync', '');
    END IF;
    RETURN NULL;
END $$;
