-- mcsync 010: the ledger and the links, narrowed (issue 22: what mcsync stores per contact).
--
-- Every mirrored contact is one ledger row and one link row, so their width is mcsync's cost
-- per contact on the app's database. Nothing the ledger must know is dropped: ownership of
-- members and tags, tags and members in doubt, renames in doubt. What goes:
--
-- * Hashes as 16 bytes, not 32 hexadecimal characters: the subscriber hash (MD5 of the
--   address) in the ledger, its key, the links, and the links' members in doubt; the
--   fingerprint of the fields sent (`fields_hash`, 128 bits). The worker keeps hex strings and
--   its statements convert (pg_catalog.decode / encode), so a hash reads as before.
-- * "Nothing in doubt" is NULL, not an empty array (`maybe_tags`, `maybe_hashes`): a NULL
--   costs a bit of the row's null bitmap, an empty array 16 bytes. Readers take NULL as empty.
-- * The ledger's `updated_at`: written on every change, read by nothing.
-- * The links' index on (user_id, audience_id, email_hash): no statement looks a link up by
--   its member (links are read by contact, through the primary key, or a user's all at once),
--   so the index was written on every link change for no reader.
-- * The ledger's fillfactor 50 (006) is kept: a member is written ahead of its call and updated
--   with the answer, and the room for that second version on the same page keeps the update
--   HOT (measured, docs/performance.md). The links' updates change no indexed column any more
--   (their one index is the primary key), so they can be HOT too, given room for the recorded
--   version (about 100 bytes) beside the written-ahead one (about 124, its member in doubt):
--   fillfactor 55, every update HOT in the scale benchmark (the default 100 made none HOT).
--
-- On an existing install the two tables are rewritten (ALTER COLUMN ... TYPE), holding an
-- exclusive lock on them for the time it takes: about a second per 100,000 members. The
-- worker waits meanwhile (the app's writes do not: they touch the queue only).
ALTER TABLE mcsync.mailchimp_members
    ALTER COLUMN maybe_tags DROP NOT NULL,
    ALTER COLUMN maybe_tags DROP DEFAULT;
UPDATE mcsync.mailchimp_members SET maybe_tags = NULL WHERE maybe_tags = '{}';
ALTER TABLE mcsync.mailchimp_members
    DROP COLUMN updated_at,
    ALTER COLUMN email_hash TYPE bytea USING pg_catalog.decode(email_hash, 'hex'),
    ALTER COLUMN fields_hash TYPE bytea USING pg_catalog.decode(fields_hash, 'hex');

DROP INDEX mcsync.mailchimp_contact_links_member_idx;
-- (An array's elements cannot be converted in ALTER COLUMN ... TYPE: no subquery there.)
ALTER TABLE mcsync.mailchimp_contact_links ADD COLUMN maybe_members bytea[];
UPDATE mcsync.mailchimp_contact_links
   SET maybe_members = (SELECT pg_catalog.array_agg(pg_catalog.decode(u.h, 'hex') ORDER BY u.n)
                          FROM pg_catalog.unnest(maybe_hashes) WITH ORDINALITY AS u(h, n))
 WHERE maybe_hashes <> '{}';
ALTER TABLE mcsync.mailchimp_contact_links DROP COLUMN maybe_hashes;
ALTER TABLE mcsync.mailchimp_contact_links RENAME COLUMN maybe_members TO maybe_hashes;
ALTER TABLE mcsync.mailchimp_contact_links
    SET (fillfactor = 55),
    ALTER COLUMN email_hash TYPE bytea USING pg_catalog.decode(email_hash, 'hex');

CALL mcsync.lock_down();
