"""The doctor's judgements: facts about an install in, one `Check` (ok or problem, with the fix
in one line) out. Pure: nothing here reads a database, a file or the network (mcsync.doctor.probes
and mcsync.doctor.network gather the facts), so every verdict is testable on its own."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Literal

from mcsync.doctor.grants import ExpectedGrants, Privileges

Status = Literal["ok", "problem", "skipped"]
# At most this many items are named in one check's detail; the rest are counted.
_NAMED = 8


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report. `fix` is one line, set only on a problem."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def ok(name: str, detail: str) -> Check:
    return Check(name, "ok", detail)


def problem(name: str, detail: str, fix: str) -> Check:
    return Check(name, "problem", detail, fix)


def skipped(name: str, detail: str) -> Check:
    return Check(name, "skipped", detail)


def _named(items: Iterable[str]) -> str:
    items = list(items)
    shown = "; ".join(items[:_NAMED])
    return shown + (f"; and {len(items) - _NAMED} more" if len(items) > _NAMED else "")


# --- migrations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class KnownMigration:
    """A migration file this mcsync ships: its version, name and the checksums it accepts."""

    version: str
    name: str
    checksums: frozenset[str]


@dataclass(frozen=True)
class MigrationFacts:
    """What the database says: the bookkeeping rows (version -> (name, checksum)), or None when
    there is no bookkeeping table; whether the schema exists; the tables in it."""

    recorded: Mapping[str, tuple[str, str]] | None
    schema_exists: bool
    tables: frozenset[str] = frozenset()


def judge_migrations(
    known: list[KnownMigration], facts: MigrationFacts, expected_tables: Iterable[str]
) -> Check:
    name = "migrations"
    if not facts.schema_exists:
        return problem(
            name,
            "mcsync's schema does not exist: mcsync is not installed in this database",
            "run `mcsync migrate` as the owner of the app's table (docs/install.md)",
        )
    if facts.recorded is None:
        # Applied by the app's own migration tool (`mcsync sql`): no bookkeeping of ours, so
        # the tables grants.sql names stand in for the versions.
        missing = sorted(set(expected_tables) - facts.tables)
        if missing:
            return problem(
                name,
                "no mcsync bookkeeping (applied by another migration tool) and tables are "
                f"missing: {_named(missing)}",
                "apply the later migrations: `mcsync sql --after <last applied>` as one file",
            )
        return ok(
            name,
            "applied by another migration tool (no mcsync bookkeeping to check versions or "
            "edits against); every table mcsync uses exists",
        )
    pending = [m.name for m in known if m.version not in facts.recorded]
    edited = [
        m.name
        for m in known
        if m.version in facts.recorded and facts.recorded[m.version][1] not in m.checksums
    ]
    unknown = sorted(set(facts.recorded) - {m.version for m in known})
    if edited:
        return problem(
            name,
            f"applied, then edited: {_named(edited)} (checksums differ from what was applied)",
            "restore the shipped migration files; put any change in a new migration",
        )
    if unknown:
        return problem(
            name,
            f"the database has migrations this mcsync does not ship: {', '.join(unknown)}",
            "run the mcsync version that applied them (upgrade this install)",
        )
    if pending:
        return problem(
            name,
            f"not applied yet: {_named(pending)}",
            "run `mcsync migrate`, then apply grants.sql again (`mcsync sql --grants`)",
        )
    span = f"{known[0].version}-{known[-1].version}" if known else "none"
    return ok(name, f"{span} applied, none edited since")


# --- the source mapping ----------------------------------------------------------------------


@dataclass(frozen=True)
class MappingFacts:
    installed_fingerprint: str | None
    view_exists: bool
    triggers: frozenset[str]  # mcsync's triggers present (their function in its schema)


def judge_mapping(
    configured_fingerprint: str, table: str, expected_triggers: Iterable[str], facts: MappingFacts
) -> Check:
    name = "mapping"
    fix = "run `mcsync migrate` with the same MCSYNC_CONFIG the processes use"
    if facts.installed_fingerprint is None:
        return problem(name, "no source mapping is recorded as installed", fix)
    if facts.installed_fingerprint != configured_fingerprint:
        return problem(
            name,
            "the mapping configured here (MCSYNC_CONFIG, else the built-in one) differs from "
            "the one installed",
            fix + " (regenerates the view and triggers, queues a full sync)",
        )
    missing = sorted(set(expected_triggers) - facts.triggers)
    if missing or not facts.view_exists:
        what = [f"trigger {t}" for t in missing] + ([] if facts.view_exists else ["the view"])
        return problem(name, f"the installed mapping's {', '.join(what)} missing", fix)
    return ok(
        name, f"matches the installed one (the view and {len(facts.triggers)} triggers, on {table})"
    )


# --- grants ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GrantFacts:
    """mcsync's roles that exist; what each holds on the schema's objects (object -> privileges;
    the schema itself is the object ""); the tables without mcsync's process policy."""

    roles: frozenset[str]
    held: Mapping[str, Mapping[str, Privileges]]
    tables_without_policy: frozenset[str] = frozenset()


def judge_grants(expected: ExpectedGrants, facts: GrantFacts, schema: str) -> Check:
    name = "grants"
    fix = (
        "apply grants.sql again, as the owner: "
        '`mcsync sql --grants | psql -v ON_ERROR_STOP=1 "$DATABASE_URL"` (an install with '
        "roles of its own: with its MCSYNC_ROLE_PREFIX, for the doctor too)"
    )
    missing_roles = sorted(set(expected.roles) - facts.roles)
    if missing_roles:
        return problem(name, f"role(s) missing: {', '.join(missing_roles)}", fix)
    lacks: list[str] = []
    extra: list[str] = []
    for role in expected.roles:
        want = expected.privileges.get(role, {})
        have = facts.held.get(role, {})
        for obj in sorted(set(want) | set(have)):
            what = f"schema {schema}" if obj == "" else f"{schema}.{obj}"
            short = want.get(obj, frozenset()) - have.get(obj, frozenset())
            over = have.get(obj, frozenset()) - want.get(obj, frozenset())
            if short:
                lacks.append(f"{role} lacks {', '.join(sorted(short))} on {what}")
            if over:
                extra.append(f"{role} has {', '.join(sorted(over))} on {what}, which it never uses")
    no_policy = [
        f"{schema}.{t} has no policy for mcsync's roles"
        for t in sorted(facts.tables_without_policy)
    ]
    found = lacks + no_policy + extra
    if found:
        hint = " (grants.sql not applied since the last migration?)" if lacks or no_policy else ""
        return problem(name, _named(found) + hint, fix)
    return ok(name, f"{', '.join(expected.roles)} hold exactly what grants.sql gives them")


# --- exposure --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grantee:
    """Someone other than the owner and mcsync's roles who can use an object of the schema."""

    role: str  # "PUBLIC" for the pseudo-role
    privilege: str
    target: str  # e.g. "table mcsync.mailchimp_connections"


@dataclass(frozen=True)
class ExposureFacts:
    grantees: list[Grantee]
    tables_without_rls: frozenset[str] = frozenset()
    # Roles that are members of mcsync's roles yet cannot log in (e.g. anon given mcsync_web).
    borrowed: list[tuple[str, str]] = field(default_factory=list)


# The one grant mcsync makes to PUBLIC itself (sql/004, mcsync.lock_down): the index on the
# app's table computes this function for whoever writes a contact.
ALLOWED_PUBLIC = {("PUBLIC", "EXECUTE", "function {schema}.mcsync_email_key(text)")}


def judge_exposure(facts: ExposureFacts, schema: str) -> Check:
    name = "exposure"
    allowed = {(r, p, t.format(schema=schema)) for r, p, t in ALLOWED_PUBLIC}
    by_role: dict[str, list[str]] = {}
    for g in facts.grantees:
        if (g.role, g.privilege, g.target) in allowed:
            continue
        by_role.setdefault(g.role, []).append(f"{g.privilege} on {g.target}")
    found = [f"{role}: {_named(sorted(set(what)))}" for role, what in sorted(by_role.items())]
    found += [f"{member} is a member of {role}" for member, role in facts.borrowed]
    found += [f"{schema}.{t} has row level security off" for t in sorted(facts.tables_without_rls)]
    if found:
        roles = sorted(set(by_role) | {m for m, _ in facts.borrowed})
        named = f" usable by {', '.join(roles)}" if roles else ""
        return problem(
            name,
            f"mcsync's objects are{named}: " + " | ".join(found),
            f"as the owner: `CALL {schema}.lock_down();` (revokes all but the owner's and "
            "mcsync's roles', turns RLS on); REVOKE any role membership named here",
        )
    return ok(
        name,
        "nothing of mcsync is usable by PUBLIC or any role but the owner and mcsync's own",
    )


# --- PostgREST -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PostgrestSetting:
    where: str  # "database app" or "role authenticator" or "role authenticator in database app"
    value: str


def exposed_schemas(value: str) -> list[str]:
    """PostgREST's db-schemas: a comma-separated list of schema names (quotes dropped)."""
    return [s.strip().strip('"') for s in value.split(",") if s.strip()]


def judge_postgrest(settings: list[PostgrestSetting], schema: str) -> Check:
    name = "postgrest"
    exposing = [s.where for s in settings if schema in exposed_schemas(s.value)]
    if exposing:
        return problem(
            name,
            f"schema {schema} is in PostgREST's exposed schemas (pgrst.db_schemas on "
            f"{', '.join(exposing)})",
            f"remove {schema} from the exposed schemas (Supabase: Project Settings -> API -> "
            "Exposed schemas; else ALTER ROLE/DATABASE ... SET pgrst.db_schemas without it)",
        )
    if not settings:
        return ok(
            name,
            "no pgrst.db_schemas setting in the database (PostgREST's own configuration, e.g. "
            f"Supabase's dashboard, is not visible from here: keep {schema} out of it)",
        )
    where = ", ".join(s.where for s in settings)
    return ok(name, f"schema {schema} is not in pgrst.db_schemas ({where})")


# --- LISTEN / NOTIFY -------------------------------------------------------------------------


@dataclass(frozen=True)
class ListenFacts:
    notified: bool
    waited: float  # seconds
    backend_pids: frozenset[int]  # pg_backend_pid() of each transaction on the one connection
    pooler_port: bool = False  # the URL's port is Supabase's transaction pooler (6543)
    elapsed_ms: float | None = None


_POOLER_FIX = (
    "give the worker a direct connection or a session-mode pooler (Supabase: "
    "db.<ref>.supabase.co:5432, or the pooler's port 5432), never transaction mode"
)


def judge_listen(facts: ListenFacts) -> Check:
    name = "listen"
    if facts.notified:
        return ok(name, f"a NOTIFY came back on this connection in {facts.elapsed_ms or 0:.0f} ms")
    cause = "this connection goes through a transaction-mode pooler"
    if len(facts.backend_pids) > 1:
        why = (
            f"{cause}: the server session changed between two transactions on one "
            f"connection ({len(facts.backend_pids)} sessions)"
        )
    elif facts.pooler_port:
        why = f"{cause} (port 6543 is Supabase's transaction-mode pooler)"
    else:
        why = (
            f"likely {cause} (PgBouncer pool_mode=transaction, Supabase's port 6543), or a "
            "proxy that drops notifications"
        )
    return problem(
        name,
        f"no notification arrived within {facts.waited:g} s of a NOTIFY: {why}; the worker "
        "would only catch up by its poll",
        _POOLER_FIX,
    )


# --- stored tokens ---------------------------------------------------------------------------

TokenOutcome = Literal[
    "newest_key",
    "older_key",
    "unbound",
    "other_user",
    "undecryptable",
    "malformed",
    "withdrawn",  # emptied by an upgrade of an exposed install (sql/007): the user reconnects
]
_TOKEN_WORDS: dict[str, str] = {
    "unbound": "in the old unbound form",
    "other_user": "bound to another user (copied between rows)",
    "undecryptable": "not decryptable with any configured key",
    "malformed": "not a stored token at all",
}


def judge_tokens(outcomes: Counter[str] | None, stored: int) -> Check:
    """`outcomes` counts each stored token's fate (None: no key configured)."""
    name = "tokens"
    if outcomes is None:
        return problem(
            name,
            f"MCSYNC_ENCRYPTION_KEYS is not set: {stored} stored token(s) cannot be checked",
            "set MCSYNC_ENCRYPTION_KEYS as the worker and the web side have it",
        )
    if stored == 0:
        return ok(name, "no stored token yet; the configured keys are usable")
    bad = {k: n for k, n in outcomes.items() if k in _TOKEN_WORDS and n}
    usable = outcomes["newest_key"] + outcomes["older_key"]
    older = f", {outcomes['older_key']} by an older key" if outcomes["older_key"] else ""
    # Not a problem of the keys: those users connect again (sql/007).
    withdrawn = outcomes["withdrawn"]
    aside = f"; {withdrawn} withdrawn by an upgrade (their users reconnect)" if withdrawn else ""
    stored -= withdrawn
    if bad:
        counts = "; ".join(f"{n} {_TOKEN_WORDS[k]}" for k, n in sorted(bad.items()))
        fix = (
            "put the key that encrypted them back in MCSYNC_ENCRYPTION_KEYS, then run "
            "`mcsync rotate-keys`"
            if "undecryptable" in bad
            else "run `mcsync rotate-keys` (binds old tokens); copied rows: the user reconnects"
        )
        return problem(
            name, f"{usable} of {stored} token(s) decrypt{older}; {counts}{aside}", fix
        )
    if older:
        return ok(
            name,
            f"all {stored} token(s) decrypt{older} (run `mcsync rotate-keys` before dropping "
            f"it){aside}",
        )
    return ok(name, f"all {stored} stored token(s) decrypt with the newest key{aside}")


# --- JWT verification ------------------------------------------------------------------------


@dataclass(frozen=True)
class JwksFacts:
    url: str
    error: str | None = None  # the kind of failure, never a key
    keys: int = 0
    algorithms: tuple[str, ...] = ()


def judge_jwt(jwks: JwksFacts | None, secret_set: bool) -> Check:
    name = "jwt"
    if jwks is None:
        if secret_set:
            return ok(
                name,
                "MCSYNC_JWT_SECRET is set (legacy HS256); no MCSYNC_JWKS_URL (needed for a "
                "project on asymmetric signing keys)",
            )
        return problem(
            name,
            "neither MCSYNC_JWKS_URL nor MCSYNC_JWT_SECRET is set: mcsync web cannot verify "
            "users' tokens",
            "set MCSYNC_JWKS_URL=https://<project-ref>.supabase.co/auth/v1/.well-known/jwks.json",
        )
    if jwks.error:
        return problem(
            name,
            f"the JWKS at {jwks.url} is not usable: {jwks.error}",
            "check MCSYNC_JWKS_URL (Supabase: https://<project-ref>.supabase.co/auth/v1/"
            ".well-known/jwks.json) and that this host can reach it",
        )
    algs = ", ".join(jwks.algorithms) or "no alg named"
    also = "; MCSYNC_JWT_SECRET also set" if secret_set else ""
    return ok(name, f"JWKS at {jwks.url} answers with {jwks.keys} key(s) ({algs}){also}")


# --- Mailchimp -------------------------------------------------------------------------------


def judge_ping(outcomes: Counter[str] | None) -> Check:
    """`outcomes` counts each connection's answer (None: --ping was not asked for)."""
    name = "mailchimp"
    if outcomes is None:
        return skipped(name, "not checked (add --ping to call each connection's account)")
    total = sum(outcomes.values())
    failed = {k: n for k, n in outcomes.items() if k != "ok" and n}
    if failed:
        counts = "; ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(failed.items()))
        return problem(
            name,
            f"{outcomes['ok']} of {total} connection(s) reach their Mailchimp account; {counts}",
            "revoked: the user reconnects from the settings panel; unreachable: check this "
            "host's network and MAILCHIMP_API_URL",
        )
    return ok(name, f"all {total} connection(s) reach their Mailchimp account")


def exit_status(checks: list[Check]) -> int:
    """1 when any check found a problem, else 0."""
    return 1 if any(c.status == "problem" for c in checks) else 0
