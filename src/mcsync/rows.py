"""How a database row becomes a planner value: one mapper per type, used by every reader.

The worker's store and the reconciliation both read `mcsync.source_contacts` and
`mailchimp_members`; both map their rows here, so a column added to `LedgerMember` is read the
same way everywhere."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from mcsync.arrays import BoolArray, Int4Array, TextArray
from mcsync.mirror import Contact, LedgerMember


def contact_from_row(row: Mapping[str, Any]) -> Contact:
    """A `mcsync.source_contacts` row (id, email, merge_fields jsonb, tags) as a `Contact`. The
    view is generated from the source mapping (mcsync.source), so this is the same whatever
    the app's table and columns are."""
    return contact_of(row["id"], row["email"], row["merge_fields"], row["tags"])


def contact_of(id: Any, email: Any, merge_fields: Any, tags: Any) -> Contact:
    """The same from the columns themselves, in the view's order: a positional row (`*row`),
    as the worker reads a pass's contacts (no dict built per row)."""
    return Contact(
        id=id,
        email=email,
        merge_fields=tuple(sorted((merge_fields or {}).items())),  # tags are keys: never two alike
        tags=tuple(tags or ()),
    )


# The C scanner `json.loads` ends in, configured as `json.loads`' default decoder.
_scan_json = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # set by its __init__


def load_json(data: str | bytes) -> Any:
    """`json.loads(data)` for PostgreSQL's own JSON text (a `jsonb` column: the worker reads a
    contact's merge fields per row), without the four Python calls `json.loads` makes around
    the C scanner: 0.7 instead of 2.2 µs per row through psycopg's loader. Text the scanner
    does not take whole (whitespace around the value, not UTF-8, not JSON) gets `json.loads`'
    own answer or error."""
    try:
        text = data if isinstance(data, str) else data.decode()
        value, end = _scan_json(text, 0)
    except (UnicodeDecodeError, StopIteration):
        return json.loads(data)
    return value if end == len(text) else json.loads(data)


def ledger_from_row(row: Mapping[str, Any]) -> LedgerMember:
    """A `mailchimp_members` row (every column of `LedgerMember`) as a `LedgerMember`."""
    return ledger_of(*(row[name] for name in LEDGER_COLUMNS))


# `LedgerMember`'s columns in the order `ledger_of` takes them (and LEDGER_BY_HASH reads them).
LEDGER_COLUMNS = (
    "email_hash",
    "email",
    "fields_hash",
    "tags",
    "maybe_tags",
    "status",
    "archived",
    "archive_status",
    "pending_rename_from",
)


def ledger_of(
    email_hash: Any,
    email: Any,
    fields_hash: Any,
    tags: Any,
    maybe_tags: Any,
    status: Any,
    archived: Any,
    archive_status: Any,
    pending_rename_from: Any,
) -> LedgerMember:
    """The same from the columns themselves, in `LEDGER_COLUMNS`' order (a positional row)."""
    return LedgerMember(
        email_hash=email_hash,
        email=email,
        fields_hash=fields_hash,
        tags=tuple(tags or ()),
        maybe_tags=tuple(maybe_tags or ()),
        status=status,
        archived=archived,
        archive_status=archive_status,
        pending_rename_from=pending_rename_from,
    )


def ledger_params(members: Sequence[LedgerMember]) -> dict[str, Any]:
    """`LedgerMember`s as the typed arrays `UPSERT_LEDGER` reads: one array per column, one
    element per member (PostgreSQL unnests them together, no JSON to parse). Each member's tags
    are a slice of one flat array: `tags[tags_from:tags_to]` (1-based, inclusive; empty when
    `tags_to < tags_from`), and the same for `maybe_tags`. Typed lists (mcsync.arrays): each
    is dumped in one piece, not element by element."""
    tags = TextArray()
    maybe = TextArray()
    tags_from = Int4Array()
    tags_to = Int4Array()
    maybe_from = Int4Array()
    maybe_to = Int4Array()
    for m in members:
        tags_from.append(len(tags) + 1)
        tags.extend(m.tags)
        tags_to.append(len(tags))
        maybe_from.append(len(maybe) + 1)
        maybe.extend(m.maybe_tags)
        maybe_to.append(len(maybe))
    return {
        "hashes": TextArray([m.email_hash for m in members]),
        "emails": TextArray([m.email for m in members]),
        "fields_hashes": TextArray([m.fields_hash for m in members]),
        "tags": tags,
        "tags_from": tags_from,
        "tags_to": tags_to,
        "maybe_tags": maybe,
        "maybe_from": maybe_from,
        "maybe_to": maybe_to,
        "statuses": TextArray([m.status for m in members]),
        "archived": BoolArray([m.archived for m in members]),
        "archive_statuses": TextArray([m.archive_status for m in members]),
        "renames": TextArray([m.pending_rename_from for m in members]),
    }
