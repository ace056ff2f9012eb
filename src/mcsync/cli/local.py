"""Commands for trying mcsync on one machine: `demo` and `emulator`."""

from __future__ import annotations

import argparse
import sys

from mcsync.cli.options import Command, flag, listen


def cmd_demo(args: argparse.Namespace) -> int:
    """Run everything on this machine with sample data: nothing to configure.

    Starts an embedded PostgreSQL and the Mailchimp emulator, migrates, connects a sample coach,
    syncs, edits a few contacts and prints the contacts beside the audience; then keeps running
    so you can edit contacts with psql and watch them sync (Ctrl-C stops). Needs the `demo`
    extra (pip install 'mcsync[demo]')."""
    from mcsync.demo import run_demo
    from mcsync.embedded import EmbeddedPostgresUnavailable
    from mcsync.logging import configure_logging

    if args.log_level == "INFO":
        configure_logging("WARNING")  # the demo prints its own story; worker logs: --log-level
    try:
        return run_demo(once=args.once)
    except EmbeddedPostgresUnavailable as exc:
        print(f"mcsync demo: {exc}", file=sys.stderr)
        return 2


def cmd_emulator(args: argparse.Namespace) -> int:
    """Run the Mailchimp emulator: a local stand-in for the Marketing API v3 and its OAuth flow.

    It starts with one account (access token `emulator-token`, dc us1, audience `demo-list`);
    /_emulator is its admin API. Point mcsync at it with
    MAILCHIMP_API_URL=http://HOST:PORT/3.0 and MAILCHIMP_LOGIN_URL=http://HOST:PORT."""
    from mcsync.emulator.server import serve

    serve(
        host=args.host,
        port=args.port,
        per_call_ms=args.per_call_ms,
        per_member_ms=args.per_member_ms,
    )
    return 0


COMMANDS = (
    Command(
        "demo",
        cmd_demo,
        "embedded Postgres + emulator + worker, with sample data",
        flags=(flag("--once", action="store_true", help="run the script, check the mirror, exit"),),
    ),
    Command(
        "emulator",
        cmd_emulator,
        "run the Mailchimp emulator",
        flags=(
            *listen(port=8765),
            flag("--per-call-ms", type=float, default=0.0, help="latency added to every API call"),
            flag(
                "--per-member-ms",
                type=float,
                default=0.0,
                help="latency added per member of a batch subscribe",
            ),
        ),
    ),
)
