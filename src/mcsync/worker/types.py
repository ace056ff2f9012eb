"""The worker's data types, in one place: what it leases (`Account`, `Event`), what it reads
for the planner (`Facts`), what became of each member (`MemberOutcome`, in the one vocabulary
`MemberStatus`) and what it writes back (`Outcomes`).

Plain data: no I/O, and nothing here imports psycopg or httpx (tests/unit/test_import_contracts.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from mcsync.ledger import MemberLedger
from mcsync.mirror import Contact, LedgerMember, MemberPlan

if TYPE_CHECKING:
    from mcsync.mailchimp.errors import MailchimpError

# What became of a member in a pass, the one vocabulary for it: "done"; "deferred" (not tried:
# the account stopped); or what the error that stopped its calls means
# (`mcsync.mailchimp.errors.disposition`: "throttled", "transient", "connection",
# "postponed", "rejected"). What each means for the member's queue rows is
# `mcsync.worker.outcomes.ROW_FATE`.
MemberStatus = Literal[
    "done", "deferred", "throttled", "transient", "connection", "postponed", "rejected"
]


@dataclass(frozen=True)
class Account:
    """A leased Mailchimp connection, as the worker serves it."""

    user_id: UUID
    audience_id: str
    api_endpoint: str
    dc: str
    access_token_encrypted: str
    double_optin: bool
    sync_status: str
    consecutive_failures: int
    has_bulk: bool = False  # an import is waiting in mailchimp_sync_bulk
    status_reason: str | None = None  # why it is paused or in error (sql/009)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Account:
        """A claimed `mailchimp_connections` row (other columns are ignored)."""
        return cls(**{k: v for k, v in row.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Event:
    """A leased queue row: one contact changed (op, the address it had, its version)."""

    id: int
    contact_id: UUID
    op: str
    email: str | None
    version: int
    attempts: int
    changed_at: datetime


@dataclass
class Facts:
    """Everything the planner needs for one claimed batch of one account."""

    changed: list[Contact]
    deleted: list[UUID]
    sharing: list[Contact]
    links: dict[UUID, str]
    ledger: dict[str, LedgerMember]
    maybe_links: dict[UUID, tuple[str, ...]] = field(default_factory=dict)
    recency: dict[UUID, datetime] = field(default_factory=dict)
    # Contacts of the shared addresses, outside this pass, still to be handled by a pass of
    # their own (a queued change, or never synced: inside an import not yet expanded).
    queued: frozenset[UUID] = frozenset()


@dataclass
class Outcomes:
    """What to write back after a batch, all in one transaction."""

    ledger_upserts: list[LedgerMember] = field(default_factory=list)
    ledger_deletes: list[str] = field(default_factory=list)
    links: list[tuple[UUID, str, datetime]] = field(default_factory=list)
    unlinks: list[UUID] = field(default_factory=list)
    rejections: list[dict[str, Any]] = field(default_factory=list)
    cleared_rejections: list[UUID] = field(default_factory=list)
    completed: list[Event] = field(default_factory=list)
    retried: list[tuple[Event, float, str]] = field(default_factory=list)
    deferred: list[Event] = field(default_factory=list)
    defer_seconds: float = 0.0
    # Refused for now about that person (signup_limited): due again in `postpone_seconds`,
    # attempts unspent, no rejection recorded.
    postponed: list[Event] = field(default_factory=list)
    postpone_seconds: float = 0.0
    released: list[Event] = field(default_factory=list)


@dataclass
class MemberOutcome:
    """What became of one member plan, and the ledger as far as Mailchimp confirmed it."""

    plan: MemberPlan
    ledger: MemberLedger
    status: MemberStatus = "done"
    error: MailchimpError | None = None
    # Why, in words for the user (a contact-level error's reason, else the error's text).
    reason: str = ""
    warnings: list[tuple[str, str | None]] = field(default_factory=list)

    def failed(self, status: MemberStatus, error: MailchimpError, reason: str) -> None:
        """The member's calls stopped at `error`, which means `status`."""
        self.status, self.error, self.reason = status, error, reason
