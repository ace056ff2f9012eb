"""What each of mcsync's roles should hold, read from sql/grants.sql itself: the one place that
says it. The doctor compares the catalog with this, so a role renamed or a table granted in
grants.sql needs no change here.

Read from the file's statements (comments dropped): `CREATE ROLE <name>` names the roles;
`GRANT <privileges> ON SCHEMA mcsync TO <roles>` and `GRANT <privileges> ON mcsync.<object> TO
<roles>` what they get. The file starts by revoking everything, so what it grants is exactly
what each role holds after it ran."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

Privileges = frozenset[str]

_COMMENT = re.compile(r"--[^\n]*")
_ROLE = re.compile(r"\bCREATE ROLE\s+([a-z_][a-z0-9_]*)", re.IGNORECASE)
_GRANT = re.compile(
    r"\bGRANT\s+(?P<privs>[A-Z,\s]+?)\s+ON\s+(?:(?P<schema>SCHEMA\s+mcsync)|mcsync\.(?P<obj>\w+))"
    r"\s+TO\s+(?P<roles>[a-z0-9_,\s]+?)\s*;",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ExpectedGrants:
    """`roles` in the order grants.sql creates them; `privileges[role][object]` the privileges
    (upper case) on `mcsync.<object>`, or on the schema itself for object ""."""

    roles: tuple[str, ...]
    privileges: dict[str, dict[str, Privileges]]

    @property
    def objects(self) -> set[str]:
        """Every object of the schema grants.sql names (the schema itself left out)."""
        return {o for per_role in self.privileges.values() for o in per_role if o}


def parse_grants(text: str) -> ExpectedGrants:
    """The roles and privileges grants.sql (written for the schema `mcsync`) gives."""
    code = _COMMENT.sub("", text)
    roles = tuple(dict.fromkeys(m.group(1) for m in _ROLE.finditer(code)))
    privileges: dict[str, dict[str, Privileges]] = {role: {} for role in roles}
    for m in _GRANT.finditer(code):
        obj = "" if m.group("schema") else m.group("obj")
        privs = frozenset(p.strip().upper() for p in m.group("privs").split(",") if p.strip())
        for role in (r.strip() for r in m.group("roles").split(",")):
            per_role = privileges.setdefault(role, {})
            per_role[obj] = per_role.get(obj, frozenset()) | privs
    return ExpectedGrants(roles, privileges)


def shipped_grants(sql_dir: Path | None = None, prefix: str | None = None) -> ExpectedGrants:
    """What this mcsync's own sql/grants.sql gives, to the roles of `prefix` (default:
    MCSYNC_ROLE_PREFIX, else `mcsync`; mcsync.roles)."""
    from mcsync.migrate import SQL_DIR
    from mcsync.roles import configured_prefix, render_roles

    text = ((sql_dir or SQL_DIR) / "grants.sql").read_text()
    return parse_grants(render_roles(text, prefix or configured_prefix()))
