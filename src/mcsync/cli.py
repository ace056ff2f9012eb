"""The `mcsync` command. Thin: parses flags, builds settings, calls into the modules."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from uuid import UUID

import psycopg

from mcsync.config import Settings, load_settings
from mcsync.crypto import EncryptionKeyError, TokenCipher
from mcsync.logging import configure_logging


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--database-url", help="libpq URL (env DATABASE_URL)")


def _add_mailchimp(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--encryption-keys", help="Fernet keys, newest first (env MCSYNC_ENCRYPTION_KEYS)"
    )
    p.add_argument("--api-url", help="API base template with {dc} (env MAILCHIMP_API_URL)")
    p.add_argument("--login-url", help="OAuth base (env MAILCHIMP_LOGIN_URL)")


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(
        database_url=getattr(args, "database_url", None),
        mcsync_encryption_keys=getattr(args, "encryption_keys", None),
        mailchimp_api_url=getattr(args, "api_url", None),
        mailchimp_login_url=getattr(args, "login_url", None),
    )


def _require_db(settings: Settings) -> str:
    if not settings.database_url:
        sys.exit("mcsync: set DATABASE_URL or pass --database-url")
    return settings.database_url


def cmd_migrate(args: argparse.Namespace) -> int:
    from mcsync.migrate import MigrationError, migrate_and_bind_tokens

    settings = _settings(args)
    cipher = _cipher(settings) if settings.encryption_keys else None
    try:
        applied, unbound = migrate_and_bind_tokens(_require_db(settings), cipher)
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
    from mcsync.migrate import SQL_DIR, MigrationError, migrations_script
    from mcsync.schema import configured_schema, render

    if args.grants:
        print(render((SQL_DIR / "grants.sql").read_text(), configured_schema()))
        return 0
    try:
        print(migrations_script(after=args.after))
    except MigrationError as exc:
        print(f"mcsync sql: {exc}", file=sys.stderr)
        return 1
    return 0


def _cipher(settings: Settings) -> TokenCipher:
    try:
        return TokenCipher(settings.encryption_keys)
    except EncryptionKeyError as exc:
        sys.exit(f"mcsync: {exc}")


def cmd_worker(args: argparse.Namespace) -> int:
    from mcsync.worker import run_worker

    settings = _settings(args)
    _require_db(settings)
    _cipher(settings)  # refuse to start without a usable key, before touching anything
    if args.poll_interval is not None:
        settings.mcsync_poll_interval = args.poll_interval
    if args.max_in_flight is not None:
        settings.mcsync_max_in_flight = args.max_in_flight
    if args.metrics_port is not None:
        settings.mcsync_metrics_port = args.metrics_port
    asyncio.run(run_worker(settings, once=args.once, worker_id=args.worker_id))
    return 0


def cmd_connect(args: argparse.Namespace) -> int:
    from mcsync.connections import connect_user

    settings = _settings(args)
    cipher = _cipher(settings)
    try:
        api_endpoint = args.api_endpoint or settings.api_base(args.dc)
    except ValueError as exc:  # a --dc that is no Mailchimp data center
        sys.exit(f"mcsync connect: {exc}")
    with psycopg.connect(_require_db(settings), autocommit=True) as conn:
        queued = connect_user(
            conn,
            cipher,
            user_id=args.user_id,
            access_token=args.access_token,
            dc=args.dc,
            api_endpoint=api_endpoint,
            account_name=args.account_name,
            audience_id=args.audience_id,
            audience_name=args.audience_name,
            double_optin=args.double_optin,
        )
    print(f"connected user {args.user_id}; {queued} contacts queued for a first full sync")
    return 0


def cmd_disconnect(args: argparse.Namespace) -> int:
    from mcsync.connections import disconnect_user

    settings = _settings(args)
    with psycopg.connect(_require_db(settings), autocommit=True) as conn:
        removed = disconnect_user(conn, args.user_id)
    print(
        f"disconnected user {args.user_id}" if removed else f"user {args.user_id} had no connection"
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from mcsync.status import connection_status, render_status_table

    settings = _settings(args)
    with psycopg.connect(_require_db(settings), autocommit=True) as conn:
        rows = connection_status(conn)
    if args.json:
        print(json.dumps(rows, default=str, indent=2))
    else:
        print(render_status_table(rows))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from mcsync.demo import run_demo

    if args.log_level == "INFO":
        configure_logging("WARNING")  # the demo prints its own story; worker logs: --log-level
    return run_demo(once=args.once)


def cmd_emulator(args: argparse.Namespace) -> int:
    from mcsync.emulator.server import serve

    serve(
        host=args.host,
        port=args.port,
        per_call_ms=args.per_call_ms,
        per_member_ms=args.per_member_ms,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcsync", description=__doc__)
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("migrate", help="apply the SQL migrations in sql/")
    _add_db(p)
    p.add_argument(
        "--encryption-keys",
        help="Fernet keys (env MCSYNC_ENCRYPTION_KEYS): with them, tokens stored in the old "
        "unbound form are bound to their user in the same transaction",
    )
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser(
        "sql", help="print the migrations as one script for another migration tool (Supabase)"
    )
    p.add_argument("--grants", action="store_true", help="print sql/grants.sql instead")
    p.add_argument(
        "--after", metavar="VERSION", help="only the migrations numbered after VERSION (e.g. 003)"
    )
    p.set_defaults(func=cmd_sql)

    p = sub.add_parser("worker", help="run the sync worker (LISTEN + poll)")
    _add_db(p)
    _add_mailchimp(p)
    p.add_argument("--once", action="store_true", help="drain everything due, then exit")
    p.add_argument("--worker-id", help="name in leases and logs (default host:pid:random)")
    p.add_argument("--poll-interval", type=float, help="seconds between polls (default 2)")
    p.add_argument("--max-in-flight", type=int, help="calls in flight per account, 1-10")
    p.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus metrics on this port (env MCSYNC_METRICS_PORT)",
    )
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("connect", help="register a connection without the browser")
    _add_db(p)
    _add_mailchimp(p)
    p.add_argument("--user-id", type=UUID, required=True)
    p.add_argument("--access-token", required=True)
    p.add_argument("--dc", required=True, help="Mailchimp data center, e.g. us1")
    p.add_argument("--audience-id", required=True)
    p.add_argument("--audience-name")
    p.add_argument("--account-name")
    p.add_argument("--api-endpoint", help="default: MAILCHIMP_API_URL with the dc filled in")
    p.add_argument(
        "--double-optin",
        action="store_true",
        help="the audience uses double opt-in: new members start as pending",
    )
    p.set_defaults(func=cmd_connect)

    p = sub.add_parser("disconnect", help="remove a user's credentials and pending events")
    _add_db(p)
    p.add_argument("--user-id", type=UUID, required=True)
    p.set_defaults(func=cmd_disconnect)

    p = sub.add_parser("status", help="one row per connection: state, backlog, rejects")
    _add_db(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("demo", help="embedded Postgres + emulator + worker, with sample data")
    p.add_argument("--once", action="store_true", help="run the script, check the mirror, exit")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("emulator", help="run the Mailchimp emulator")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--per-call-ms", type=float, default=0.0)
    p.add_argument("--per-member-ms", type=float, default=0.0)
    p.set_defaults(func=cmd_emulator)

    from mcsync.web.commands import add_commands as add_web_commands

    add_web_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
