"""In-memory data: accounts, audiences, members, tags. No Mailchimp rules live here.

Members are kept in a dict keyed by subscriber hash so 100,000-member audiences stay cheap.
All mutation happens synchronously inside one request on uvicorn's single event loop, so no
locks are needed.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional", "archived")
DEFAULT_MERGE_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("FNAME", "text", "First Name"),
    ("LNAME", "text", "Last Name"),
    ("PHONE", "phone", "Phone Number"),
    ("ADDRESS", "address", "Address"),
)
REQUEST_LOG_SIZE = 100_000

_web_ids = itertools.count(100_001)


def subscriber_hash(email: str) -> str:
    return hashlib.md5(email.lower().encode()).hexdigest()


def iso_now() -> str:
    return iso_of(time.time())


def iso_of(ts: float) -> str:
    """`ts` to the second, in ISO 8601 with its UTC offset (as Mailchimp writes times)."""
    if ts >= 0 and ts % 1 < 0.999999:
        # Members made in one batch share their second: each second is written once. (Closer
        # to the next second, microsecond rounding may reach it: the long way below.)
        return _iso_of_second(int(ts))
    return datetime.fromtimestamp(ts, UTC).replace(microsecond=0).isoformat()


@lru_cache(maxsize=1 << 10)
def _iso_of_second(second: int) -> str:
    return datetime.fromtimestamp(second, UTC).isoformat()


@dataclass
class MergeField:
    tag: str
    type: str  # text, number, phone, address, date, birthday, zip, dropdown, radio, url
    name: str
    required: bool = False
    choices: list[str] = field(default_factory=list)
    merge_id: int = 0


@dataclass
class Tag:
    id: int
    name: str


class StatusIndex:
    """An audience's members by status (hash -> member, in the order they took the status), so
    a listing filtered by status reads only those members, not the whole audience (Mailchimp
    answers from its own indexes; a scan made the archived listing cost the emulator time in
    proportion to the audience). Kept by `Member.status`'s setter and `Audience`'s methods."""

    def __init__(self) -> None:
        self.by_status: dict[str, dict[str, Member]] = {}

    def add(self, member: Member) -> None:
        self.by_status.setdefault(member.status, {})[member.id] = member

    def discard(self, member: Member, status: str | None = None) -> None:
        self.by_status.get(status or member.status, {}).pop(member.id, None)

    def members(self, status: str) -> Iterator[Member]:
        """The members with `status`; read it before the next change to the audience."""
        return iter(self.by_status.get(status, {}).values())

    def count(self, status: str) -> int:
        return len(self.by_status.get(status, ()))


class _IndexedStatus:
    """`Member.status`, which moves the member between its audience's `StatusIndex` entries
    whatever code sets it (rules, admin, batch)."""

    def __get__(self, member: Member | None, owner: type | None = None) -> str:
        if member is None:
            raise AttributeError("status")  # no class-level default: the field is required
        return member.__dict__["_status"]

    def __set__(self, member: Member, status: str) -> None:
        old = member.__dict__.get("_status")
        member.__dict__["_status"] = status
        index: StatusIndex | None = member.__dict__.get("_index")
        if index is not None and old != status:
            index.discard(member, old)
            index.add(member)


@dataclass
class Member:
    id: str
    email_address: str
    status: str  # indexed: see _IndexedStatus, installed below
    merge_fields: dict[str, Any]
    contact_id: str = field(default_factory=lambda: secrets.token_hex(16))
    unique_email_id: str = field(default_factory=lambda: secrets.token_hex(5))
    web_id: int = field(default_factory=lambda: next(_web_ids))
    email_type: str = "html"
    language: str = ""
    vip: bool = False
    interests: dict[str, bool] = field(default_factory=dict)
    ip_signup: str = ""
    ip_opt: str = ""
    timestamp_signup: str = ""
    timestamp_opt: str = field(default_factory=iso_now)
    source: str = "API - Generic"
    unsubscribe_reason: str = ""
    # What the status was before archiving; compliance survives an archive (see rules).
    status_before_archive: str = ""
    # The person unsubscribed themselves, or an address bounced (cleaned): a compliance state
    # the API may not subscribe out of. An unsubscribe made through the API sets no hold.
    compliance_hold: bool = False
    # tag id -> the date-time it was added (ISO 8601); dict keeps insertion order.
    tags: dict[int, str] = field(default_factory=dict)
    last_changed_at: float = field(default_factory=time.time)

    def touch(self) -> None:
        self.last_changed_at = time.time()


# Installed after the dataclass is built (it then has no default for `status`); its generated
# __init__ sets the status through it like every later change.
setattr(Member, "status", _IndexedStatus())  # noqa: B010


@dataclass
class Audience:
    id: str
    name: str
    double_optin: bool = False
    phone_format: str = "International"
    merge_fields: dict[str, MergeField] = field(default_factory=dict)
    members: dict[str, Member] = field(default_factory=dict)
    # Hashes of permanently deleted ("forgotten") addresses: they may never be re-imported.
    forgotten: set[str] = field(default_factory=set)
    # Tag registry: lower-cased name -> Tag (keeps the case of the first creation).
    tags: dict[str, Tag] = field(default_factory=dict)
    tags_by_id: dict[int, Tag] = field(default_factory=dict)
    date_created: str = field(default_factory=iso_now)
    web_id: int = field(default_factory=lambda: next(_web_ids))
    _tag_ids: itertools.count = field(default_factory=lambda: itertools.count(1001))
    statuses: StatusIndex = field(default_factory=StatusIndex, repr=False)

    def tag_for(self, name: str) -> Tag:
        """The audience's tag of that name, created on first use."""
        tag = self.tags.get(name.lower())
        if tag is None:
            tag = Tag(next(self._tag_ids), name)
            self.tags[name.lower()] = tag
            self.tags_by_id[tag.id] = tag
        return tag

    def member_tags(self, member: Member) -> list[Tag]:
        return [self.tags_by_id[i] for i in member.tags]

    def find(self, key: str) -> Member | None:
        """Resolve a path key: the hash, the email address itself, or the contact_id."""
        member = self.members.get(key)
        if member is not None:
            return member
        if "@" in key:
            return self.members.get(subscriber_hash(key))
        for m in self.members.values():  # contact_id lookups are rare; a scan is fine
            if m.contact_id == key:
                return m
        return None

    def add(self, member: Member) -> None:
        self.members[member.id] = member
        member.__dict__["_index"] = self.statuses
        self.statuses.add(member)

    def rename(self, member: Member, new_email: str) -> None:
        del self.members[member.id]
        self.statuses.discard(member)
        member.id = subscriber_hash(new_email)
        member.email_address = new_email
        self.members[member.id] = member
        self.statuses.add(member)

    def forget(self, member: Member) -> None:
        del self.members[member.id]
        self.statuses.discard(member)
        member.__dict__.pop("_index", None)
        self.forgotten.add(member.id)


@dataclass
class Account:
    dc: str
    account_name: str
    access_token: str
    account_id: str = field(default_factory=lambda: secrets.token_hex(12))
    user_id: int = field(default_factory=lambda: secrets.randbelow(90_000_000) + 10_000_000)
    login_id: int = field(default_factory=lambda: secrets.randbelow(90_000_000) + 10_000_000)
    login_email: str = ""
    audiences: dict[str, Audience] = field(default_factory=dict)
    in_flight: int = 0  # concurrent API requests right now (the 10-connection limit)
    member_since: str = field(default_factory=iso_now)


@dataclass
class RequestRecord:
    method: str
    path: str
    status: int
    at: float


@dataclass
class Store:
    accounts: list[Account] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)
    requests: deque[RequestRecord] = field(default_factory=lambda: deque(maxlen=REQUEST_LOG_SIZE))
    # Lower-cased addresses Mailchimp currently refuses to sign up anywhere ("has signed up to a
    # lot of lists very recently"): a per-person refusal across every account and list.
    signup_limited: set[str] = field(default_factory=set)

    def account_by_token(self, token: str) -> Account | None:
        if token in self.revoked:
            return None
        for account in self.accounts:
            if account.access_token == token:
                return account
        return None

    def account_by_id(self, account_id: str) -> Account | None:
        for account in self.accounts:
            if account.account_id == account_id or account.account_name == account_id:
                return account
        return None

    def audience(self, audience_id: str) -> tuple[Account, Audience] | None:
        for account in self.accounts:
            audience = account.audiences.get(audience_id)
            if audience is not None:
                return account, audience
        return None

    def log(self, method: str, path: str, status: int) -> None:
        self.requests.append(RequestRecord(method, path, status, time.time()))


def new_audience(spec: dict[str, Any]) -> Audience:
    """Build an audience from the admin API's spec (docs/emulator.md, "Admin API")."""
    required = {str(t) for t in spec.get("required_fields") or []}
    fields: dict[str, MergeField] = {}
    defs = spec.get("merge_fields")
    if defs is None:
        defs = [{"tag": t, "type": ty, "name": n} for t, ty, n in DEFAULT_MERGE_FIELDS]
    for i, d in enumerate(defs, start=1):
        tag = str(d["tag"])
        fields[tag] = MergeField(
            tag=tag,
            type=str(d.get("type", "text")),
            name=str(d.get("name", tag)),
            required=bool(d.get("required", False)) or tag in required,
            choices=[str(c) for c in d.get("choices") or []],
            merge_id=i,
        )
    for tag in sorted(required - fields.keys()):  # a required tag nobody defined: make it text
        fields[tag] = MergeField(
            tag=tag, type="text", name=tag, required=True, merge_id=len(fields) + 1
        )
    return Audience(
        id=str(spec.get("id") or secrets.token_hex(5)),
        name=str(spec.get("name") or "Audience"),
        double_optin=bool(spec.get("double_optin", False)),
        phone_format=str(spec.get("phone_format") or "International"),
        merge_fields=fields,
    )
