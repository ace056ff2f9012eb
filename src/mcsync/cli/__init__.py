"""The `mcsync` command: every subcommand, in small modules per group.

Each module has `cmd_*` functions (thin: they build settings and call into mcsync's modules) and
a table, `COMMANDS`, that declares them and their flags. Flags that override settings, and the
flags several commands share, are declared once, in `mcsync.cli.options`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from mcsync.cli import accounts, database, doctor, local, web, worker
from mcsync.logging import configure_logging

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
    return int(args.func(args) or 0)
