"""`mcsync doctor`: check an install as the operator runs it."""

from __future__ import annotations

import argparse
import json
import os
import sys

from mcsync.cli.options import JSON, Command, flag, require_database, settings_from

JWKS_URL_ENV = "MCSYNC_JWKS_URL"


def cmd_doctor(args: argparse.Namespace) -> int:
    """Check this install and print each check as ok or problem, with the fix in one line.

    Run it as the owner (DATABASE_URL, as for `mcsync migrate`), with the settings the worker
    and the web side have (MCSYNC_ENCRYPTION_KEYS, MCSYNC_CONFIG, MCSYNC_SCHEMA, MCSYNC_JWKS_URL
    or MCSYNC_JWT_SECRET). It checks: the migrations are applied and unedited; the source
    mapping matches the one installed; grants.sql was applied after the last migration (each of
    mcsync's roles holds exactly what it uses); nothing of mcsync is usable by PUBLIC or any
    other role; the schema is not in PostgREST's exposed schemas (where the database says);
    a LISTEN/NOTIFY round trip on the worker's connection (--listen-url); every stored token
    decrypts (counts only, never a token); the JWKS answers (or the legacy secret is set); with
    --ping, each connection's Mailchimp account answers. Read-only. Exit status 1 on any
    problem, 0 when all is well."""
    from mcsync.doctor import DoctorOptions, exit_status, run_doctor
    from mcsync.schema import SchemaNameError, configured_schema
    from mcsync.source import MappingError, load_mapping

    settings = settings_from(args)
    require_database(settings)
    try:
        schema = configured_schema()
        mapping = load_mapping()
    except (SchemaNameError, MappingError) as exc:
        print(f"mcsync doctor: {exc}", file=sys.stderr)
        return 1
    checks = run_doctor(
        DoctorOptions(
            settings=settings,
            schema=schema,
            mapping=mapping,
            jwks_url=(args.jwks_url or os.environ.get(JWKS_URL_ENV, "")).strip(),
            listen_url=args.listen_url or "",
            ping=args.ping,
            listen_wait=args.listen_wait,
        )
    )
    status = exit_status(checks)
    if args.json:
        print(json.dumps({"ok": status == 0, "checks": [c.as_dict() for c in checks]}, indent=2))
        return status
    width = max(len(c.name) for c in checks)
    for c in checks:
        print(f"{c.status:<8} {c.name:<{width}}  {c.detail}")
        if c.fix:
            print(f"{'':<8} {'':<{width}}  fix: {c.fix}")
    problems = sum(1 for c in checks if c.status == "problem")
    print(f"\n{problems} problem(s)" if problems else "\nall ok")
    return status


COMMANDS = (
    Command(
        "doctor",
        cmd_doctor,
        "check this install: migrations, mapping, grants, exposure, LISTEN, tokens, JWT",
        settings=("database_url", "encryption_keys", "api_url", "jwt_secret"),
        flags=(
            JSON,
            flag(
                "--jwks-url",
                help=f"the JWKS the web side verifies users' tokens with (env {JWKS_URL_ENV})",
            ),
            flag(
                "--listen-url",
                help="the connection string the worker uses, for the LISTEN/NOTIFY round trip "
                "(default: DATABASE_URL)",
            ),
            flag(
                "--listen-wait",
                type=float,
                default=2.0,
                help="seconds to wait for the NOTIFY to come back (default 2)",
            ),
            flag(
                "--ping", action="store_true", help="also call each connection's Mailchimp account"
            ),
        ),
    ),
)
