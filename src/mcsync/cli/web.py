"""The web side's commands: `web` (OAuth, settings API, widget), `sync-now` and `verify`."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
from typing import Any
from uuid import UUID

from mcsync.cli.options import (
    JSON,
    MAILCHIMP,
    USER,
    Command,
    database_and_cipher,
    listen,
)
from mcsync.crypto import EncryptionKeyError


def cmd_web(args: argparse.Namespace) -> int:
    """Serve the OAuth popup flow, the settings JSON API, the widget (/static/mcsync.js) and
    the operator's page (/admin; nobody may open it unless --operator-ids/--operator-claim).

    Needs the app's JWKS URL (MCSYNC_JWKS_URL; or, for a project still on the legacy shared
    secret, MCSYNC_JWT_SECRET), MCSYNC_APP_ORIGIN and your registered Mailchimp app
    (MAILCHIMP_CLIENT_ID, MAILCHIMP_CLIENT_SECRET, MAILCHIMP_REDIRECT_URI) besides the database
    and encryption keys; it says which one is missing."""
    import uvicorn

    from mcsync.web.app import ConfigError, create_app

    settings, _ = database_and_cipher(args)
    try:
        app = create_app(settings)
    except (ConfigError, EncryptionKeyError) as exc:
        print(f"mcsync web: {exc}", file=sys.stderr)
        return 2
    # No access log: the OAuth callback's query string holds a one-time code.
    uvicorn.run(
        app, host=args.host, port=args.port, access_log=False, log_config=None, proxy_headers=True
    )
    return 0


def cmd_sync_now(args: argparse.Namespace) -> int:
    """Reconcile one user's audience with their contacts, queueing only what differs.

    The operator's Sync Now: no hourly limit, and an interrupted run is resumed where it stopped
    instead of restarted. Prints a JSON summary; exit 1 when another process holds the run."""
    from mcsync.database import Database
    from mcsync.reconcile import ReconcileError, run_reconciliation, start_operator_run

    settings, cipher = database_and_cipher(args)
    user_id: UUID = args.user_id
    owner = f"cli-{socket.gethostname()}-{os.getpid()}"
    with Database.session(settings.database_url) as db:  # the command's one pool
        with db.connection() as conn:
            try:
                start_operator_run(conn, user_id)
            except ReconcileError as exc:
                print(f"mcsync sync-now: {exc}", file=sys.stderr)
                return 2
        result = asyncio.run(run_reconciliation(db, settings, cipher, user_id, owner=owner))
    if result is None:
        print(
            "mcsync sync-now: the run is held by another process, or had to stop (see the log)",
            file=sys.stderr,
        )
        return 1
    print(
        json.dumps(
            {
                "user_id": str(user_id),
                "listed": result.listed,
                "differences": result.differences,
                "queued": result.queued,
                "resumed_at_offset": result.resumed_at,
            }
        )
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Audit one user's audience against their contacts, changing nothing.

    Lists each difference (kind, address, detail). Exit status: 0 in sync, 1 on drift, 2 when it
    cannot check (no connection, Mailchimp unreachable)."""
    from mcsync.database import Database
    from mcsync.mailchimp.errors import MailchimpError
    from mcsync.reconcile import ReconcileError, audit

    settings, cipher = database_and_cipher(args)
    try:
        with Database.session(settings.database_url) as db:
            diffs = asyncio.run(audit(db, settings, cipher, args.user_id))
    except (ReconcileError, MailchimpError) as exc:
        print(f"mcsync verify: {exc}", file=sys.stderr)
        return 2
    if args.json:
        out: dict[str, Any] = {
            "user_id": str(args.user_id),
            "in_sync": not diffs,
            "differences": [d.as_dict() for d in diffs],
        }
        print(json.dumps(out, indent=2))
    elif not diffs:
        print("in sync: the audience mirrors the contacts")
    else:
        print(f"{len(diffs)} difference(s):")
        for d in diffs:
            print(f"  {d.kind:<10} {d.email}  {d.detail}")
    return 1 if diffs else 0


COMMANDS = (
    Command(
        "web",
        cmd_web,
        "serve the OAuth routes, the settings API and the widget",
        settings=(
            *MAILCHIMP,
            "login_url",
            "jwks_url",
            "jwt_secret",
            "jwt_audience",
            "jwt_issuer",
            "state_secret",
            "app_origin",
            "client_id",
            "client_secret",
            "redirect_uri",
            "operator_ids",
            "operator_claim",
        ),
        flags=listen(port=8000),
    ),
    Command(
        "sync-now",
        cmd_sync_now,
        "full reconciliation for one user (queues what differs)",
        settings=MAILCHIMP,
        flags=(USER,),
    ),
    Command(
        "verify",
        cmd_verify,
        "read-only drift audit; exit 1 on drift",
        settings=MAILCHIMP,
        flags=(USER, JSON),
    ),
)
