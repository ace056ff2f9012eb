"""Large imports: one bulk row per import statement, split into slices and expanded by the
worker under its least-privilege role (the example `contacts` schema; the bulk path does not
depend on the app's columns)."""

from __future__ import annotations

from tests.support.harness import SyncHarness


def test_the_worker_role_expands_a_large_import_in_slices(
    sync: SyncHarness, repo_root: object
) -> None:
    """An import larger than one expansion is split into slices once (the worker inserts the
    slices, so its role needs INSERT on the bulk table), then expanded slice by slice."""
    from tests.support.roles import regrant, worker_url

    regrant(sync.db_url)
    user = sync.add_user()
    sync.execute(
        """INSERT INTO contacts (user_id, email, first_name)
           SELECT %s, 'slice' || g || '@coachmail.io', 'S' || g FROM generate_series(1, 1234) g""",
        (user.user_id,),
    )
    limited = SyncHarness(sync.db_url, sync.emulator, worker_url=worker_url(sync.db_url))
    limited.settings.mcsync_claim_size = 100
    limited.settings.mcsync_max_passes = 2  # expansions of 200 ids: 7 slices
    limited.drain()
    members = sync.members(user)
    assert len(members) == 1234
    assert members["slice1234@coachmail.io"]["merge_fields"]["FNAME"] == "S1234"
    assert sync.queue() == []
    assert sync.execute("SELECT * FROM mcsync.mailchimp_sync_bulk") == []
