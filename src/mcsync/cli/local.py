"""Commands for trying mcsync on one machine: `demo` and `emulator`."""

from __future__ import annotations

import argparse
import errno
import sys

from mcsync.cli.options import Command, flag, listen


def cmd_demo(args: argparse.Namespace) -> int:
    """Run everything on this machine with sample data: nothing to configure.

    Starts an embedded PostgreSQL, the Mailchimp emulator, the worker and `mcsync web` with a
    demo page (http://127.0.0.1:8000/): connect the sample coach through the emulator's consent
    screen, choose an audience, edit contacts, and watch the audience follow beside them; the
    terminal prints one line per change mirrored. Ctrl-C (or SIGTERM) stops it and removes its
    database. `--once` runs a script instead: connects, syncs, edits, prints the contacts beside
    the audience and exits 0 when they match. Needs the `demo` extra (pip install
    'mcsync[demo]')."""
    from mcsync.demo import run_demo
    from mcsync.demo_live import DemoStartError
    from mcsync.embedded import EmbeddedPostgresUnavailable
    from mcsync.logging import configure_logging

    if args.log_level == "INFO":
        configure_logging("WARNING")  # the demo prints its own story; worker logs: --log-level
    try:
        return run_demo(once=args.once, port=args.port, emulator_port=args.emulator_port)
    except (EmbeddedPostgresUnavailable, DemoStartError) as exc:
        print(f"mcsync demo: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        print(
            f"mcsync demo: the emulator's port {args.emulator_port} is in use;"
            " choose another with --emulator-port",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:  # stopped while starting; everything started is stopped
        return 130


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
        flags=(
            flag("--once", action="store_true", help="run the script, check the mirror, exit"),
            flag(
                "--port",
                type=int,
                default=8000,
                help="the demo page and mcsync web, on 127.0.0.1 (default 8000; 0: any free)",
            ),
            flag(
                "--emulator-port",
                type=int,
                default=8765,
                help="the Mailchimp emulator, on 127.0.0.1 (default 8765; 0: any free)",
            ),
        ),
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
