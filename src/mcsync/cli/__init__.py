"""The `mcsync` command: every subcommand, in small modules per group.

Each module has `cmd_*` functions (thin: they build settings and call into mcsync's modules) and
a table, `COMMANDS`, that declares them and their flags. Flags that override settings, and the
flags several commands share, are declared once, in `mcsync.cli.options`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

import psycopg

from mcsync.cli import accounts, database, doctor, local, web, worker
from mcsync.logging import configure_logging, redact_text

__all__ = ["build_parser", "main"]

DESCRIPTION = """\
mcsync mirrors your app's Postgres contacts into Mailchimp audiences, one way.

Set it up with `mcsync migrate`, run `mcsync worker` (and `mcsync web` for the OAuth popup and
the settings widget) beside the app, and watch it with `mcsync status`. Every flag that is a
setting can also be given as the environment variable named in its help."""

EPILOG = "Run `mcsync COMMAND --help` for a command's flags. Try it all locally: `mcsync demo`."


def _version() -> str:
    try:
        return version("mcsync")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The `mcsync` argument parser, with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="mcsync",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mcsync {_version()}")
    parser.add_argument(
        "--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (database, doctor, worker, accounts, web, local):
        for command in group.COMMANDS:
            command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mcsync` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    try:
        return int(args.func(args) or 0)
    except (
        psycopg.OperationalError,
        psycopg.errors.InsufficientPrivilege,
        psycopg.errors.UndefinedTable,
    ) as exc:
        # A database that cannot be reached, a role without a privilege the command needs, or
        # mcsync's tables not there (not migrated, or another MCSYNC_SCHEMA) is the operator's
        # to fix: one line saying so, not a traceback. (Nothing was applied:
        # every command that writes does so in a transaction.) Other database errors keep
        # their traceback: they are mcsync's to fix.
        print(f"mcsync {args.command}: {_database_problem(exc)}", file=sys.stderr)
        return 1


def _database_problem(exc: psycopg.Error) -> str:
    message = redact_text(
        (exc.diag.message_primary if exc.diag else None) or str(exc).strip().splitlines()[0]
    )
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return (
            f"{message}: the role in DATABASE_URL lacks a privilege this command needs; "
            "docs/install.md says which role runs which command (migrate and the operator "
            "commands: the owner of the app's table, with CREATE on the database)"
        )
    if isinstance(exc, psycopg.errors.UndefinedTable):
        return (
            f"{message}: is mcsync installed in this database? Run `mcsync migrate` first, "
            "with the same MCSYNC_SCHEMA (and MCSYNC_CONFIG) as this command"
        )
    return f"cannot use the database: {message} (check DATABASE_URL or --database-url)"
