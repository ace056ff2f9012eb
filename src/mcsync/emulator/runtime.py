"""The emulator's mutable world: data store, faults, limits and OAuth state, resettable."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, fields
from typing import Any

from .faults import DEFAULT_SEED, Faults
from .state import Account, Store, new_audience


@dataclass
class Limits:
    """Mailchimp's 10-connection cap and our latency model (both adjustable at run time)."""

    per_call_ms: float = 0.0
    per_member_ms: float = 0.0
    max_in_flight: int = 10
    # Every Nth refused request gets an empty body, as Mailchimp's throttling sometimes does.
    bodiless_429_every: int = 2
    refusals: int = 0

    def to_json(self) -> dict[str, Any]:
        """The settings as the admin API shows them (the running refusal count is internal)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "refusals"}


@dataclass
class Options:
    """Switches for behaviours where the evidence about real Mailchimp is thin.

    `batch_status_if_new_unarchives`: a batch subscribe (`update_existing`) naming an ARCHIVED
    member with only `status_if_new` either leaves it archived and unchanged, listed nowhere in
    the answer (False, the default: the strict side; the description's `updated_members` never
    have an `archived` status) or unarchives it with that status, fields
    and tags applied, as POST /members does for an archived address (True). Nobody has
    recorded Mailchimp's answer; other clients treat archived members as re-creatable.
    """

    batch_status_if_new_unarchives: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"batch_status_if_new_unarchives": self.batch_status_if_new_unarchives}


@dataclass
class OAuthClient:
    client_id: str
    client_secret: str
    redirect_uri: str | None = None  # when set, authorize/token must use exactly this URI


@dataclass
class AuthCode:
    code: str
    client_id: str
    redirect_uri: str
    account_id: str
    expires_at: float


@dataclass
class Emulator:
    store: Store = field(default_factory=Store)
    faults: Faults = field(default_factory=Faults)
    limits: Limits = field(default_factory=Limits)
    options: Options = field(default_factory=Options)
    oauth_clients: dict[str, OAuthClient] = field(default_factory=dict)
    codes: dict[str, AuthCode] = field(default_factory=dict)
    # Accounts re-created by reset (the CLI server seeds a demo account this way).
    seed_accounts: list[dict[str, Any]] = field(default_factory=list)
    # Latency given at start; reset returns to it.
    initial_latency: tuple[float, float] = (0.0, 0.0)

    def create_account(self, spec: dict[str, Any]) -> Account:
        token = str(spec.get("access_token") or secrets.token_hex(16))
        if any(a.access_token == token for a in self.store.accounts):
            raise ValueError("an account with this access_token exists")
        dc = str(spec.get("dc") or "us1")
        name = str(spec.get("account_name") or f"Account {len(self.store.accounts) + 1}")
        account = Account(dc=dc, account_name=name, access_token=token)
        account.login_email = str(spec.get("login_email") or f"owner{account.login_id}@mc.invalid")
        self.store.revoked.discard(token)
        specs = spec.get("audiences")
        if specs is None:  # omitted -> one default audience; [] -> none
            specs = [{"name": f"{name} Audience"}]
        for aspec in specs:
            audience = new_audience(aspec)
            if self.store.audience(audience.id) is not None or audience.id in account.audiences:
                raise ValueError(f"audience id {audience.id} exists")
            account.audiences[audience.id] = audience
        self.store.accounts.append(account)
        return account

    def reset(self, seed: int | None = None) -> None:
        self.store = Store()
        self.faults = Faults(DEFAULT_SEED if seed is None else seed)
        per_call, per_member = self.initial_latency
        self.limits = Limits(per_call_ms=per_call, per_member_ms=per_member)
        self.options = Options()
        self.oauth_clients.clear()
        self.codes.clear()
        for spec in self.seed_accounts:
            self.create_account(spec)
