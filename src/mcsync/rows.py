"""How a database row becomes a planner value: one mapper per type, used by every reader.

The worker's store and the reconciliation both read `mcsync.source_contacts` and
`mailchimp_members`; both map their rows here, so a column added to `LedgerMember` is read the
same way everywhere."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcsync.mirror import Contact, LedgerMember


def contact_from_row(row: Mapping[str, Any]) -> Contact:
    """A `mcsync.source_contacts` row (id, email, merge_fields jsonb, tags) as a `Contact`. The
    view is generated from the source mapping (mcsync.source), so this is the same whatever
    the app's table and columns are."""
    fields = row["merge_fields"] or {}
    return Contact(
        id=row["id"],
        email=row["email"],
        merge_fields=tuple(sorted(fields.items())),  # tags are keys: never two alike
        tags=tuple(row["tags"] or ()),
    )


def ledger_from_row(row: Mapping[str, Any]) -> LedgerMember:
    """A `mailchimp_members` row (every column of `LedgerMember`) as a `LedgerMember`."""
    return LedgerMember(
        email_hash=row["email_hash"],
        email=row["email"],
        fields_hash=row["fields_hash"],
        tags=tuple(row["tags"] or ()),
        maybe_tags=tuple(row["maybe_tags"] or ()),
        status=row["status"],
        archived=row["archived"],
        archive_status=row["archive_status"],
        pending_rename_from=row["pending_rename_from"],
    )


def ledger_to_row(member: LedgerMember) -> dict[str, Any]:
    """A `LedgerMember` as the JSON object `UPSERT_LEDGER` reads."""
    return {
        "email_hash": member.email_hash,
        "email": member.email,
        "fields_hash": member.fields_hash,
        "tags": list(member.tags),
        "maybe_tags": list(member.maybe_tags),
        "archive_status": member.archive_status,
        "pending_rename_from": member.pending_rename_from,
        "status": member.status,
        "archived": member.archived,
    }
