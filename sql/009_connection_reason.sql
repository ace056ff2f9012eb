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
-- NULL while active.
ALTER TABLE mcsync.mailchimp_connections ADD COLUMN status_reason text;

CALL mcsync.lock_down();
