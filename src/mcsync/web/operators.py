"""Who may open the operator's page (`/admin`): a rule over a verified JWT's claims.

Deny by default: with neither setting, nobody is an operator. Either (or both) of:

- MCSYNC_OPERATOR_IDS: user ids (the token's `sub`), comma-separated;
- MCSYNC_OPERATOR_CLAIM: a claim path and the value it must hold, e.g.
  `app_metadata.mcsync_role=operator` (equal, or contained when the claim is a list), or just
  `app_metadata.mcsync_operator` (the claim must be JSON `true`).

A claim the user can write themselves can never grant access: Supabase's `user_metadata` (and
`raw_user_meta_data`) is editable by the signed-in user through `auth.updateUser`, so a rule
naming it is refused at start-up; `app_metadata` is writable only with the service role
(https://supabase.com/docs/guides/auth/managing-user-data). The token itself is verified by
`mcsync.web.auth` exactly as for the widget; this module only reads its claims."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

# Claims a user can set on themselves (Supabase): never a source of privilege.
USER_WRITABLE = ("user_metadata", "raw_user_meta_data")


class OperatorRuleError(ValueError):
    """The operator settings cannot be used; the message says which and why."""


@dataclass(frozen=True)
class OperatorRule:
    """Operators are the listed user ids, plus whoever carries the claim."""

    user_ids: frozenset[UUID] = frozenset()
    claim_path: tuple[str, ...] = ()
    claim_value: str | None = None  # None: the claim must be `true`

    @classmethod
    def from_settings(cls, ids: str, claim: str) -> OperatorRule:
        """MCSYNC_OPERATOR_IDS and MCSYNC_OPERATOR_CLAIM, checked."""
        user_ids = set()
        for raw in ids.split(","):
            if raw.strip():
                try:
                    user_ids.add(UUID(raw.strip()))
                except ValueError:
                    raise OperatorRuleError(
                        f"MCSYNC_OPERATOR_IDS: {raw.strip()!r} is not a user id (a UUID)"
                    ) from None
        path: tuple[str, ...] = ()
        value: str | None = None
        claim = claim.strip()
        if claim:
            name, eq, wanted = claim.partition("=")
            path = tuple(p.strip() for p in name.split("."))
            if not all(path):
                raise OperatorRuleError(f"MCSYNC_OPERATOR_CLAIM: {claim!r} is not a claim path")
            if path[0] in USER_WRITABLE:
                raise OperatorRuleError(
                    f"MCSYNC_OPERATOR_CLAIM: {path[0]} is written by the users themselves; "
                    "use a claim only the app's server can set (Supabase: app_metadata)"
                )
            if path[0] in ("sub", "exp", "iat", "aud", "iss", "role") and len(path) == 1:
                raise OperatorRuleError(
                    f"MCSYNC_OPERATOR_CLAIM: {path[0]} is a standard claim every user has"
                )
            value = wanted.strip() if eq else None
        return cls(frozenset(user_ids), path, value)

    @property
    def configured(self) -> bool:
        return bool(self.user_ids or self.claim_path)

    def allows(self, user_id: UUID, claims: Mapping[str, Any]) -> bool:
        """True when the verified token's holder is an operator."""
        if user_id in self.user_ids:
            return True
        if not self.claim_path:
            return False
        found: Any = claims
        for part in self.claim_path:
            if not isinstance(found, Mapping) or part not in found:
                return False
            found = found[part]
        if self.claim_value is None:
            return found is True
        if isinstance(found, list):
            return self.claim_value in [str(v) for v in found if isinstance(v, str | int)]
        return (
            isinstance(found, str | int)
            and not isinstance(found, bool)
            and (str(found) == self.claim_value)
        )
