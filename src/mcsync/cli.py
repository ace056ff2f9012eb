"""The `mcsync` command. Thin: parses flags, builds settings, calls into the modules."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mcsync.config import Settings, load_settings
from mcsync.logging import configure_logging


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--database-url", help="libpq URL (env DATABASE_URL)")


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
    from mcsync.migrate import MigrationError, apply_migrations

    try:
        applied = apply_migrations(_require_db(_settings(args)))
    except MigrationError as exc:
        print(f"mcsync migrate: {exc}", file=sys.stderr)
        return 1
    print("applied: " + ", ".join(applied) if applied else "up to date")
    return 0


def cmd_emulator(args: argparse.Namespace) -> int:
    from mcsync.emulator.server import serve

    serve(host=args.host, port=args.port, per_call_ms=args.per_call_ms,
          per_member_ms=args.per_member_ms)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcsync", description=__doc__)
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("migrate", help="apply the SQL migrations in sql/")
    _add_db(p)
    p.set_defaults(func=cmd_migrate)

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
