"""Commands that look after mcsync's tables: `migrate` and `rotate-keys`."""

from __future__ import annotations

import argparse
import sys

from mcsync.cli.options import (
    DATABASE,
    MAILCHIMP,
    add_command,
    database_and_cipher,
    require_database,
    settings_from,
)
from mcsync.crypto import EncryptionKeyError


def cmd_migrate(args: argparse.Namespace) -> int:
    """Apply mcsync's SQL migrations to the app's database.

    Each file in sql/ runs once, in order, in its own transaction; versions and checksums are
    recorded in mcsync_schema_migrations. Safe to rerun. It refuses to run over a migration file
    edited after it was applied, and says so when the app's contacts table is missing."""
    from mcsync.migrate import MigrationError, apply_migrations

    try:
        applied = apply_migrations(require_database(settings_from(args)))
    except MigrationError as exc:
        print(f"mcsync migrate: {exc}", file=sys.stderr)
        return 1
    print("applied: " + ", ".join(applied) if applied else "up to date")
    return 0


def cmd_rotate_keys(args: argparse.Namespace) -> int:
    """Re-encrypt every stored Mailchimp token with the newest key.

    Put the new key first in MCSYNC_ENCRYPTION_KEYS (keep the old one after it), run this, then
    drop the old key."""
    import psycopg

    from mcsync.connections import rotate_tokens

    settings, cipher = database_and_cipher(args)
    try:
        with psycopg.connect(settings.database_url) as conn:
            n = rotate_tokens(conn, cipher)
    except EncryptionKeyError as exc:
        print(f"mcsync rotate-keys: {exc}", file=sys.stderr)
        return 1
    print(f"re-encrypted {n} token(s) with the newest key")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    add_command(
        sub, "migrate", cmd_migrate, help="apply the SQL migrations in sql/", settings=DATABASE
    )
    add_command(
        sub,
        "rotate-keys",
        cmd_rotate_keys,
        help="re-encrypt every stored token with the newest key",
        settings=MAILCHIMP,
    )
