"""CLI subcommands for the web side: web, sync-now, verify, rotate-keys."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
from typing import Any
from uuid import UUID

from mcsync.config import Settings, load_settings
from mcsync.crypto import EncryptionKeyError, TokenCipher

# flag -> Settings field; every flag can also come from the environment (the field's name).
_FLAGS = {
    "database_url": "database_url",
    "encryption_keys": "mcsync_encryption_keys",
    "api_url": "mailchimp_api_url",
    "login_url": "mailchimp_login_url",
    "jwt_secret": "mcsync_jwt_secret",
    "app_origin": "mcsync_app_origin",
    "client_id": "mailchimp_client_id",
    "client_secret": "mailchimp_client_secret",
    "redirect_uri": "mailchimp_redirect_uri",
}


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--database-url", help="libpq URL (env DATABASE_URL)")
    p.add_argument(
        "--encryption-keys", help="Fernet keys, newest first (env MCSYNC_ENCRYPTION_KEYS)"
    )
    p.add_argument("--api-url", help="API base template with {dc} (env MAILCHIMP_API_URL)")


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(**{field: getattr(args, flag, None) for flag, field in _FLAGS.items()})


def _ready(args: argparse.Namespace) -> tuple[Settings, TokenCipher]:
    """Settings and cipher, or exit with a message that says what to set."""
    settings = _settings(args)
    if not settings.database_url:
        sys.exit("mcsync: set DATABASE_URL or pass --database-url")
    try:
        return settings, TokenCipher(settings.encryption_keys)
    except EncryptionKeyError as exc:
        sys.exit(f"mcsync: {exc}")


def cmd_web(args: argparse.Namespace) -> int:
    import uvicorn

    from mcsync.web.app import ConfigError, create_app

    settings, _ = _ready(args)
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
    """Operator's Sync Now: no hourly limit; resumes an interrupted run instead of restarting."""
    import psycopg
    from psycopg.rows import dict_row

    from mcsync import queries
    from mcsync.reconcile import ReconcileError, request_sync_now, run_reconciliation

    settings, cipher = _ready(args)
    user_id: UUID = args.user_id
    with psycopg.connect(settings.database_url, autocommit=True, row_factory=dict_row) as conn:
        run = conn.execute(queries.GET_RECONCILIATION, {"user_id": user_id}).fetchone()
        if run is None or run["finished_at"] is not None:
            try:
                request_sync_now(conn, user_id, min_interval=0)
            except ReconcileError as exc:
                print(f"mcsync sync-now: {exc}", file=sys.stderr)
                return 2
    owner = f"cli-{socket.gethostname()}-{os.getpid()}"
    result = asyncio.run(run_reconciliation(settings, cipher, user_id, owner=owner))
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
    from mcsync.mailchimp.errors import MailchimpError
    from mcsync.reconcile import ReconcileError, audit

    settings, cipher = _ready(args)
    try:
        diffs = asyncio.run(audit(settings, cipher, args.user_id))
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


def cmd_rotate_keys(args: argparse.Namespace) -> int:
    import psycopg

    from mcsync.connections import rotate_tokens

    settings, cipher = _ready(args)
    try:
        with psycopg.connect(settings.database_url) as conn:
            n = rotate_tokens(conn, cipher)
    except EncryptionKeyError as exc:
        print(f"mcsync rotate-keys: {exc}", file=sys.stderr)
        return 1
    print(f"re-encrypted {n} token(s) with the newest key, each bound to its user")
    return 0


def add_commands(sub: Any) -> None:
    """Register this side's subcommands on the `mcsync` parser's subparsers."""
    p = sub.add_parser("web", help="serve the OAuth routes, the settings API and the widget")
    _common(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--login-url", help="OAuth base (env MAILCHIMP_LOGIN_URL)")
    p.add_argument("--jwt-secret", help="the app's JWT secret (env MCSYNC_JWT_SECRET)")
    p.add_argument("--app-origin", help="origin(s) that embed the widget (env MCSYNC_APP_ORIGIN)")
    p.add_argument("--client-id", help="env MAILCHIMP_CLIENT_ID")
    p.add_argument("--client-secret", help="env MAILCHIMP_CLIENT_SECRET")
    p.add_argument("--redirect-uri", help="env MAILCHIMP_REDIRECT_URI")
    p.set_defaults(func=cmd_web)

    p = sub.add_parser("sync-now", help="full reconciliation for one user (queues what differs)")
    _common(p)
    p.add_argument("--user-id", type=UUID, required=True)
    p.set_defaults(func=cmd_sync_now)

    p = sub.add_parser("verify", help="read-only drift audit; exit 1 on drift")
    _common(p)
    p.add_argument("--user-id", type=UUID, required=True)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("rotate-keys", help="re-encrypt every token with the newest key")
    _common(p)
    p.set_defaults(func=cmd_rotate_keys)
