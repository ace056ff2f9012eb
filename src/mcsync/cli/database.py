"""Commands that look after mcsync's tables: `migrate`, `sql` and `rotate-keys`."""

from __future__ import annotations

import argparse
import sys

from mcsync.cli.options import (
    MAILCHIMP,
    Command,
    database_and_cipher,
    flag,
    require_cipher,
    require_database,
    settings_from,
)
from mcsync.crypto import EncryptionKeyError


def cmd_migrate(args: argparse.Namespace) -> int:
    """Apply mcsync's SQL migrations to the app's database.

    Every pending file in sql/ runs once, in order, all in ONE transaction; versions and
    checksums are recorded in mcsync.mcsync_schema_migrations. mcsync's tables live in their own
    schema (`mcsync`, or MCSYNC_SCHEMA); the app's schema gets only the triggers. Safe to rerun.
    It refuses to run over a migration file edited after it was applied. In the same transaction
    it checks the source mapping (MCSYNC_CONFIG, docs/mapping.md) against the catalog and
    generates the view and triggers from it; a mistake names the key and the column and changes
    nothing, and a changed mapping queues a full sync of every connected user.

    With MCSYNC_ENCRYPTION_KEYS (or --encryption-keys), tokens stored by an older mcsync in the
    unbound form are bound to their user in the same transaction; without keys it exits 1 and
    says how many are left (run `mcsync rotate-keys`)."""
    from mcsync.migrate import MigrationError, migrate_and_bind_tokens

    settings = settings_from(args)
    cipher = require_cipher(settings) if settings.encryption_keys else None
    try:
        applied, unbound = migrate_and_bind_tokens(require_database(settings), cipher)
    except (MigrationError, EncryptionKeyError) as exc:
        print(f"mcsync migrate: {exc}", file=sys.stderr)
        return 1
    print("applied: " + ", ".join(applied) if applied else "up to date")
    if unbound:
        print(
            f"mcsync migrate: {unbound} stored token(s) are not bound to their user yet and "
            "will not be used: run `mcsync rotate-keys` (or this command again) with "
            "MCSYNC_ENCRYPTION_KEYS set",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    """Print the migrations as one SQL script, for another migration tool (Supabase's, Flyway).

    The script is rendered for MCSYNC_SCHEMA; apply it as ONE migration, as the owner of
    the app's contacts table; it ends with what the source mapping (MCSYNC_CONFIG) generates.
    --after VERSION prints only the migrations numbered after VERSION (an upgrade);
    --grants prints sql/grants.sql, the roles the worker and the web side log in as, named
    for MCSYNC_ROLE_PREFIX (default `mcsync`: mcsync_worker, mcsync_web). See docs/install.md."""
    from mcsync.migrate import MigrationError, migrations_script
    from mcsync.roles import RolePrefixError, grants_script
    from mcsync.schema import SchemaNameError
    from mcsync.source import MappingError, load_mapping

    if args.grants:
        try:
            print(grants_script())
        except (RolePrefixError, SchemaNameError) as exc:
            print(f"mcsync sql: {exc}", file=sys.stderr)
            return 1
        return 0
    try:
        print(migrations_script(after=args.after, mapping=load_mapping()))
    except (MigrationError, MappingError) as exc:
        print(f"mcsync sql: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_rotate_keys(args: argparse.Namespace) -> int:
    """Re-encrypt every stored Mailchimp token with the newest key, bound to its user.

    Tokens stored by an older mcsync (unbound) are bound now. Put the new key first in
    MCSYNC_ENCRYPTION_KEYS (keep the old one after it), run this, then drop the old key."""
    import psycopg

    from mcsync.connections import rotate_tokens

    settings, cipher = database_and_cipher(args)
    try:
        with psycopg.connect(settings.database_url) as conn:
            n = rotate_tokens(conn, cipher)
    except EncryptionKeyError as exc:
        print(f"mcsync rotate-keys: {exc}", file=sys.stderr)
        return 1
    print(f"re-encrypted {n} token(s) with the newest key, each bound to its user")
    return 0


COMMANDS = (
    Command(
        "migrate",
        cmd_migrate,
        "apply the SQL migrations in sql/ (one transaction)",
        settings=("database_url", "encryption_keys"),
    ),
    Command(
        "sql",
        cmd_sql,
        "print the migrations as one script for another migration tool (Supabase)",
        flags=(
            flag("--grants", action="store_true", help="print sql/grants.sql instead"),
            flag(
                "--after",
                metavar="VERSION",
                help="only the migrations numbered after VERSION (e.g. 003)",
            ),
        ),
    ),
    Command(
        "rotate-keys",
        cmd_rotate_keys,
        "re-encrypt every stored token with the newest key",
        settings=MAILCHIMP,
    ),
)
