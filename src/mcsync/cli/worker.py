"""The commands an operator runs the sync with: `worker` and `status`."""

from __future__ import annotations

import argparse
import asyncio
import json

import psycopg

from mcsync.cli.options import (
    DATABASE,
    JSON,
    MAILCHIMP,
    Command,
    database_and_cipher,
    flag,
    require_database,
    settings_from,
)


def cmd_worker(args: argparse.Namespace) -> int:
    """Run the sync worker: it LISTENs for changes and polls, and mirrors them into Mailchimp.

    Run one or more beside the app (several workers share the accounts between them). SIGTERM
    stops it after the calls in flight are answered and recorded. It refuses to start without a
    database URL and a usable encryption key."""
    from mcsync.worker.runner import run_worker, tune_collector

    # Refuse to start without a usable key, before touching anything.
    settings, _ = database_and_cipher(args)
    tune_collector()
    asyncio.run(run_worker(settings, once=args.once, worker_id=args.worker_id))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Show one row per connection: state, notice, backlog, oldest change, rejects, last error.

    A healthy connection is `active`, has no notice, a small backlog and a recent last sync."""
    from mcsync.connections import connection_status
    from mcsync.status import render_status_table

    settings = settings_from(args)
    with psycopg.connect(require_database(settings), autocommit=True) as conn:
        rows = connection_status(conn)
    if args.json:
        print(json.dumps(rows, default=str, indent=2))
    else:
        print(render_status_table(rows))
    return 0


COMMANDS = (
    Command(
        "worker",
        cmd_worker,
        "run the sync worker (LISTEN + poll)",
        settings=(
            *MAILCHIMP,
            "login_url",
            "poll_interval",
            "max_in_flight",
            "metrics_port",
            "metrics_host",
        ),
        flags=(
            flag("--once", action="store_true", help="drain everything due, then exit"),
            flag("--worker-id", help="name in leases and logs (default host:pid:random)"),
        ),
    ),
    Command(
        "status",
        cmd_status,
        "one row per connection: state, backlog, rejects",
        settings=DATABASE,
        flags=(JSON,),
    ),
)
