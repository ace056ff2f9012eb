-- mcsync 009: why a connection is not active. `sync_status` says what the worker does with the
-- connection (active: syncs; paused: probes with backoff and resumes by itself; error: waits for
-- the user to reconnect); `status_reason` says why, in a stable word the operator's
-- `mcsync status` shows and a log query can match:
--   failures            five failed attempts of a row (paused, probing)
--   token_undecryptable no configured key opens the stored token (paused, probing: restore the
--                       key in MCSYNC_ENCRYPTION_KEYS, or reconnect)
--   token_unbound       stored by an older mcsync, before tokens were bound (paused, probing:
--                       `mcsync rotate-keys`)
--   token_not_this_users the stored token is bound to another user (error: reconnect)
--   invalid_dc          the stored data center is not of Mailchimp's form (error: reconnect)
--   token_revoked       Mailchimp refused the token: 401, or a 403 with a body (error: reconnect)
--   token_withdrawn     an upgrade of an exposed install withdrew a token two rows held
--                       (sql/007's mcsync.distrust_exposed_rows; error: reconnect)
-- NULL while active.
ALTER TABLE mcsync.mailchimp_connections ADD COLUMN status_reason text;

-- Connections withdrawn before this migration, and the procedure saying why from now on.
UPDATE mcsync.mailchimp_connections
   SET status_reason = 'token_withdrawn'
 WHERE access_token_encrypted = '' AND sync_status = 'error';
CREATE OR REPLACE PROCEDURE mcsync.distrust_exposed_rows()
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM mcsync.mailchimp_sync_queue;
    DELETE FROM mcsync.mailchimp_sync_bulk;
    DELETE FROM mcsync.mailchimp_contact_links;
    DELETE FROM mcsync.mailchimp_members;
    DELETE FROM mcsync.mailchimp_rejected_contacts;
    DELETE FROM mcsync.mcsync_oauth_states;
    DELETE FROM mcsync.mcsync_reconcile_seen;
    DELETE FROM mcsync.mcsync_reconciliations;
    UPDATE mcsync.mailchimp_connections c
       SET sync_status = 'error',
           status_reason = 'token_withdrawn',
           notice = 'Please reconnect Mailchimp to keep your contacts in sync.',
           last_error = 'token held by more than one connection; reconnect required',
           access_token_encrypted = '',  -- none: see ALL_ENCRYPTED_TOKENS
           updated_at = pg_catalog.now()
     WHERE c.access_token_encrypted NOT LIKE 'mcsync2:%'  -- bound: decrypts only for its user
       AND c.access_token_encrypted IN (
               SELECT d.access_token_encrypted FROM mcsync.mailchimp_connections d
                GROUP BY d.access_token_encrypted HAVING pg_catalog.count(*) > 1);
END $$;

CALL mcsync.lock_down();
