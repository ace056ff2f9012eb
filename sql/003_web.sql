-- mcsync 003: what the web side keeps (OAuth state replay protection, Sync Now runs).

-- OAuth `state` values already spent. A state is signed and expires on its own; this table is
-- what makes it single-use. Rows are only useful until the state would have expired anyway,
-- so the callback prunes old ones as it goes.
CREATE TABLE mcsync_oauth_states (
    nonce      text PRIMARY KEY,
    user_id    uuid NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz NOT NULL DEFAULT now()
);

-- One full reconciliation ("Sync Now") per user: when it was asked for (the hourly limit
-- counts from here, and survives a disconnect), how far the audience listing got (so a run
-- interrupted by a crash resumes at the next page), and who is running it (a lease that
-- expires if that process dies).
CREATE TABLE mcsync_reconciliations (
    user_id      uuid PRIMARY KEY,
    audience_id  text NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    next_offset  integer NOT NULL DEFAULT 0,
    queued       integer NOT NULL DEFAULT 0,
    lease_owner  text,
    lease_until  timestamptz,
    finished_at  timestamptz,
    error        text
);

-- Members a running reconciliation has already listed, so a resumed run still knows which
-- desired members were present on the pages it read before the crash.
CREATE TABLE mcsync_reconcile_seen (
    user_id    uuid NOT NULL,
    email_hash text NOT NULL,
    PRIMARY KEY (user_id, email_hash)
);
