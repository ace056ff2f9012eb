"""`mcsync doctor`: checks an install as the operator runs it, one `Check` per concern.

`run_doctor` gathers facts (mcsync.doctor.probes reads the catalog, mcsync.doctor.network
talks to live things) and hands each set to its judgement in mcsync.doctor.checks, which says
ok or problem and the fix. A check that cannot run (the database refuses a read) is itself a
problem, saying why; the others still run."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from mcsync.config import Settings
from mcsync.crypto import EncryptionKeyError
from mcsync.doctor import checks, network, probes
from mcsync.doctor.checks import Check, exit_status
from mcsync.doctor.grants import ExpectedGrants, shipped_grants
from mcsync.source import SourceMapping
from mcsync.source_sql import triggers_sql

__all__ = ["Check", "DoctorOptions", "exit_status", "run_doctor"]


@dataclass
class DoctorOptions:
    """What the doctor checks against. `listen_url` is the connection the worker uses
    (default: `settings.database_url`); `sql_dir` where migrations and grants.sql come from."""

    settings: Settings
    schema: str
    mapping: SourceMapping
    jwks_url: str = ""
    listen_url: str = ""
    ping: bool = False
    listen_wait: float = 2.0
    sql_dir: Path | None = None
    expected: ExpectedGrants | None = field(default=None)


def _known_migrations(sql_dir: Path | None) -> list[checks.KnownMigration]:
    from mcsync.migrate import SQL_DIR, accepted_checksums, load_migrations

    return [
        checks.KnownMigration(m.version, m.name, accepted_checksums(m))
        for m in load_migrations(sql_dir or SQL_DIR)
    ]


def trigger_names(mapping: SourceMapping) -> list[str]:
    """The triggers the mapping generates (mcsync.source_sql.triggers_sql), by name."""
    return re.findall(r'CREATE TRIGGER "?(\w+)"?', triggers_sql(mapping).as_string(None))


def _guarded(name: str, run: Callable[[], Check]) -> Check:
    try:
        return run()
    except psycopg.Error as exc:
        message = (exc.diag.message_primary if exc.diag else None) or str(exc).strip()
        return checks.problem(
            name,
            f"could not check: {type(exc).__name__}: {message}",
            "run the doctor as the owner of mcsync's schema (the role `mcsync migrate` ran as)",
        )


def _guarded_value(read: Callable[[], str | None]) -> str | None:
    try:
        return read()
    except psycopg.Error:
        return None  # the grants check that follows says what cannot be read


def run_doctor(options: DoctorOptions) -> list[Check]:
    """Every check, in the order an operator fixes them."""
    settings = options.settings
    expected = options.expected or shipped_grants(options.sql_dir)
    out: list[Check] = []
    reachable = False
    try:
        conn = psycopg.connect(settings.database_url, autocommit=True)
    except psycopg.Error as exc:
        out.append(
            checks.problem(
                "database",
                f"cannot connect: {type(exc).__name__}",
                "check DATABASE_URL (or --database-url): the owner's connection string",
            )
        )
    else:
        reachable = True
        with conn:
            if options.expected is None:
                # The roles grants.sql last named for this install, else MCSYNC_ROLE_PREFIX.
                prefix = _guarded_value(lambda: probes.installed_role_prefix(conn, options.schema))
                expected = shipped_grants(options.sql_dir, prefix)
            out += _database_checks(conn, options, expected)
    if reachable or options.listen_url:
        listen_url = options.listen_url or settings.database_url
        out.append(
            _guarded(
                "listen",
                lambda: checks.judge_listen(
                    network.listen_round_trip(listen_url, options.listen_wait)
                ),
            )
        )
    else:
        out.append(checks.skipped("listen", "not checked: the database is unreachable"))
    jwks = network.fetch_jwks(options.jwks_url) if options.jwks_url else None
    out.append(checks.judge_jwt(jwks, bool(settings.mcsync_jwt_secret)))
    if options.ping and reachable:
        out.append(_guarded("mailchimp", lambda: _ping(options)))
    else:
        out.append(checks.judge_ping(None))
    return out


def _database_checks(
    conn: psycopg.Connection[Any], options: DoctorOptions, expected: ExpectedGrants
) -> list[Check]:
    schema, mapping = options.schema, options.mapping
    known = _known_migrations(options.sql_dir)
    migrations = _guarded(
        "migrations",
        lambda: checks.judge_migrations(
            known, probes.migration_facts(conn, schema), expected.objects
        ),
    )
    out = [migrations]
    if not probes.schema_exists(conn, schema):
        return out  # nothing else of mcsync's to look at
    triggers = trigger_names(mapping)
    out.append(
        _guarded(
            "mapping",
            lambda: checks.judge_mapping(
                mapping.fingerprint,
                mapping.table,
                triggers,
                probes.mapping_facts(conn, schema, triggers),
            ),
        )
    )
    out.append(
        _guarded(
            "grants",
            lambda: checks.judge_grants(
                expected, probes.grant_facts(conn, schema, expected.roles), schema
            ),
        )
    )
    out.append(
        _guarded(
            "exposure",
            lambda: checks.judge_exposure(
                probes.exposure_facts(conn, schema, expected.roles), schema
            ),
        )
    )
    out.append(
        _guarded(
            "postgrest",
            lambda: checks.judge_postgrest(probes.postgrest_settings(conn), schema),
        )
    )
    out.append(_guarded("tokens", lambda: _tokens(conn, options)))
    return out


def _tokens(conn: psycopg.Connection[Any], options: DoctorOptions) -> Check:
    rows = probes.stored_tokens(conn, options.schema)
    keys = options.settings.encryption_keys
    if not keys:
        return checks.judge_tokens(None, len(rows))
    try:
        outcomes = probes.token_outcomes(rows, keys)
    except (EncryptionKeyError, ValueError):  # a key that is not a Fernet key
        return checks.problem(
            "tokens",
            "MCSYNC_ENCRYPTION_KEYS holds a value that is not a Fernet key",
            "set MCSYNC_ENCRYPTION_KEYS exactly as the worker and the web side have it",
        )
    return checks.judge_tokens(outcomes, len(rows))


def _ping(options: DoctorOptions) -> Check:
    with psycopg.connect(options.settings.database_url, autocommit=True) as conn:
        rows = probes.connections_to_ping(conn, options.schema)
    return checks.judge_ping(network.ping_accounts(options.settings, rows))
