-- mcsync 005: the source mapping (docs/mapping.md). `mcsync migrate` generates the view
-- `mcsync.source_contacts`, the index and the triggers on the app's table from the mapping
-- (mcsync.source), in the same transaction as the migrations, and records here which mapping
-- it installed: a different one next time regenerates them and queues a full reconciliation
-- of every connected user.
CREATE TABLE mcsync.source_mapping (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    mapping     jsonb NOT NULL,
    fingerprint text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

CALL mcsync.lock_down();
