"""The planner: a pure function from (contacts, what Mailchimp was last told) to Mailchimp calls.

No I/O here. The worker reads the facts, calls `plan_member_ops`, applies the operations and
records what happened; everything that makes the mirror correct (coalescing, email changes,
shared addresses, deletes, tag ownership, replays after a crash) is decided here.

The mirror, for a user's audience: one member per distinct valid email (trimmed, compared
lowercased) among the user's contacts, with the merge
fields (FNAME/LNAME/PHONE by default) from the most recently changed of those contacts and the
union of their tags. mcsync never raises a member's status, never removes a tag it did not set,
and archives (never deletes) only members it owns.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property, lru_cache
from uuid import UUID

from mcsync.emails import ASCII_SPACES, normalize_email, subscriber_hash

# How json.dumps(..., ensure_ascii=False) writes a string (see fields_hash).
_json_text = json.encoder.encode_basestring

MERGE_TEXT_LIMIT = 255  # bytes; Mailchimp truncates text merge fields there
ACTIVE_STATUSES = ("subscribed", "pending")
TAG_NAME_LIMIT = 100  # characters; Mailchimp refuses the whole call for a longer tag name
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- facts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Contact:
    """One contact as the source mapping reads it (mcsync.source): its id, email, merge fields
    (Mailchimp merge tag -> value, already in Mailchimp's form, e.g. BIRTHDAY as MM/DD) and
    tags."""

    id: UUID
    email: str | None
    merge_fields: tuple[tuple[str, str | None], ...] = ()
    tags: tuple[str, ...] = ()

    def field(self, tag: str) -> str | None:
        """The value of one merge field (None when empty or not mapped)."""
        return dict(self.merge_fields).get(tag)


@dataclass(frozen=True)
class LedgerMember:
    """What mcsync last told Mailchimp about one member."""

    email_hash: str
    email: str
    fields_hash: str | None
    tags: tuple[str, ...]
    status: str | None = None
    archived: bool = False
    # Tags asked for but never confirmed (the answer was lost): possibly set.
    maybe_tags: tuple[str, ...] = ()
    # The status it had when mcsync archived it (None: mcsync did not archive it).
    archive_status: str | None = None
    # An email change from this hash may have turned the member into this one (answer lost).
    pending_rename_from: str | None = None

    @property
    def maybe_archived(self) -> bool:
        """Archived, or possibly archived by mcsync: an archive or a restore of ours whose
        answer was lost keeps `archive_status` until an answer shows the member live."""
        return self.archived or self.archive_status is not None


@dataclass(frozen=True)
class DesiredMember:
    """What one member should be: the mirror of every contact with its address."""

    email_hash: str
    email: str
    merge_fields: dict[str, str]
    tags: tuple[str, ...]
    contact_ids: tuple[UUID, ...]

    @cached_property
    def fields_hash(self) -> str:
        return fields_hash(self.email, self.merge_fields)


# --- operations ----------------------------------------------------------------------------


@dataclass(frozen=True)
class UpsertMember:
    """PUT the member. `status` is set only to restore a member mcsync itself archived."""

    email_hash: str
    email: str
    merge_fields: dict[str, str]
    status_if_new: str
    status: str | None = None


@dataclass(frozen=True)
class RenameMember:
    """PATCH the old hash with the new address, so the member keeps its history.

    If Mailchimp answers that the new address is already a member, run `on_conflict`; if the
    old member is gone, run `on_missing`."""

    old_hash: str
    email_hash: str
    email: str
    merge_fields: dict[str, str]
    on_conflict: tuple[Op, ...]
    on_missing: tuple[Op, ...]


@dataclass(frozen=True)
class UpdateTags:
    """Make tags active or inactive on a member (only tags mcsync set become inactive)."""

    email_hash: str
    active: tuple[str, ...]
    inactive: tuple[str, ...]


@dataclass(frozen=True)
class ArchiveMember:
    """Archive (never delete) a member mcsync owns and no contact wants any more."""

    email_hash: str


Op = UpsertMember | RenameMember | UpdateTags | ArchiveMember


@dataclass(frozen=True)
class MemberPlan:
    """The calls for one member, in order, and the contacts whose queue rows depend on them."""

    email_hash: str
    ops: tuple[Op, ...]
    desired: DesiredMember | None
    contact_ids: tuple[UUID, ...]
    renamed_from: str | None = None


@dataclass(frozen=True)
class Rejection:
    """A contact the planner will not sync (e.g. an address that cannot be one)."""

    contact_id: UUID
    email: str | None
    reason: str
    field: str | None = None


@dataclass
class Plan:
    """The planner's answer for one batch of changed contacts."""

    members: list[MemberPlan] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    # Where each changed contact should be linked once its members are done (None: unlinked).
    links: dict[UUID, str | None] = field(default_factory=dict)
    # Contacts outside this batch, still to be handled, whose fields or tags a member plan
    # sends: each may be that member from now on (see `borrowed_links`).
    maybe_links: dict[UUID, str] = field(default_factory=dict)

    def member_hashes(self) -> set[str]:
        """Every member this plan reads or may change."""
        hashes = {m.email_hash for m in self.members}
        hashes |= {m.renamed_from for m in self.members if m.renamed_from}
        return hashes


# --- normalisation -------------------------------------------------------------------------


def _truncate(value: str | None) -> str:
    text = (value or "").strip()
    if text.isascii() and len(text) <= MERGE_TEXT_LIMIT:
        return text  # a byte a character: short enough without encoding it
    encoded = text.encode()
    if len(encoded) <= MERGE_TEXT_LIMIT:
        return text
    return encoded[:MERGE_TEXT_LIMIT].decode(errors="ignore")


def merge_fields_of(contact: Contact) -> dict[str, str]:
    """The contact's merge fields (those the mapping names: FNAME, LNAME and PHONE by
    default), trimmed and cut to Mailchimp's limit."""
    return {tag: _truncate(value) for tag, value in contact.merge_fields}


def fields_hash(email: str, merge_fields: Mapping[str, str]) -> str:
    """A fingerprint of what was sent: the ledger compares it to know when to send again.

    The text hashed is `json.dumps([email, sorted(merge_fields.items())], ensure_ascii=False)`
    (ledgers hold hashes of it), written out here without building a JSON encoder per call,
    which cost the worker more than the hash itself; anything but text takes `json.dumps`."""
    items = sorted(merge_fields.items())
    pairs: list[str] = []
    if type(email) is str:
        for k, v in items:
            if type(k) is not str or type(v) is not str:
                break
            pairs.append(f"[{_json_text(k)}, {_json_text(v)}]")
        else:
            canonical = f"[{_json_text(email)}, [{', '.join(pairs)}]]"
            return hashlib.sha256(canonical.encode()).hexdigest()[:32]
    canonical = json.dumps([email, items], ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def clean_tags(tags: Iterable[str]) -> list[str]:
    """Trimmed, non-empty, at most 100 characters, de-duplicated case-insensitively (first
    spelling wins). A longer tag is cut rather than dropped: the coach still finds it."""
    if type(tags) is list:
        tags = tuple(tags)
    if type(tags) is tuple:
        # Planning and recording clean the same few tag sets over and over (an import's
        # contacts all have the same tags): the answer for a tuple is remembered.
        return list(_clean_tag_tuple(tags)) if tags else []
    return _clean_tags(tags)


@lru_cache(maxsize=1 << 12)
def _clean_tag_tuple(tags: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(_clean_tags(tags))


def _clean_tags(tags: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for tag in tags:
        name = tag.strip() if tag else ""
        if len(name) > TAG_NAME_LIMIT:
            name = name[:TAG_NAME_LIMIT].strip()
        key = name.casefold()
        if name and key not in seen:
            seen.add(key)
            out.append(name)
    return out


def status_if_new(double_optin: bool) -> str:
    """A new member's status: pending (confirmation email) under double opt-in."""
    return "pending" if double_optin else "subscribed"


# --- the mirror ----------------------------------------------------------------------------


def contact_recency(
    synced: Iterable[tuple[UUID, datetime]], pending: Iterable[tuple[UUID, datetime]]
) -> dict[UUID, datetime]:
    """When each contact last changed, as "most recently changed" means it everywhere (the
    worker's passes, Sync Now and `verify`): the later of when it was last synced (its link's
    `changed_at`) and its pending change (its queue row's `changed_at`), if any. Contacts with
    neither count as oldest (see `desired_members`)."""
    out: dict[UUID, datetime] = {}
    for contact_id, at in (*synced, *pending):
        if at is not None and (contact_id not in out or at > out[contact_id]):
            out[contact_id] = at
    return out


def desired_members(
    contacts: Iterable[Contact], recency: Mapping[UUID, datetime] | None = None
) -> dict[str, DesiredMember]:
    """The mirror of these contacts, keyed by subscriber hash.

    Fields come from the most recently changed contact of an address (`recency`; ties and
    unknowns broken by contact id, so the answer never depends on input order)."""
    recency = recency or {}
    # Per address: its first contact's normalized email, and every contact with it.
    groups: dict[str, tuple[str, list[Contact]]] = {}
    for contact in contacts:
        email = normalize_email(contact.email)
        if email is not None:
            email_hash = subscriber_hash(email)
            if email_hash in groups:
                groups[email_hash][1].append(contact)
            else:
                groups[email_hash] = (email, [contact])
    out: dict[str, DesiredMember] = {}
    for email_hash, (email, group) in groups.items():
        if len(group) == 1:
            # A contact alone at its address (an import's every contact): nothing to order.
            lead = group[0]
            tags = clean_tags(lead.tags)
            contact_ids: tuple[UUID, ...] = (lead.id,)
        else:
            group.sort(key=lambda c: (recency.get(c.id, _EPOCH), str(c.id)), reverse=True)
            lead = group[0]
            lead_email = normalize_email(lead.email)
            assert lead_email is not None
            email = lead_email
            tags = clean_tags(t for c in group for t in c.tags)
            contact_ids = tuple(sorted((c.id for c in group), key=str))
        out[email_hash] = DesiredMember(
            email_hash=email_hash,
            email=email,
            merge_fields=merge_fields_of(lead),
            tags=tuple(tags),
            contact_ids=contact_ids,
        )
    return out


def tag_changes(
    desired: Sequence[str], already_set: Sequence[str], maybe_set: Sequence[str] = ()
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Tags to make active and inactive. Only tags mcsync set (or may have set) before can become
    inactive, so a tag a marketer added by hand is never touched. A tag mcsync may have set is
    sent again until Mailchimp confirms it. Names match case-insensitively."""
    have = {t.casefold() for t in already_set}
    want = {t.casefold() for t in desired}
    active = tuple(t for t in desired if t.casefold() not in have)
    inactive = tuple(t for t in clean_tags([*already_set, *maybe_set]) if t.casefold() not in want)
    return active, inactive


def tags_after_rename(
    old: LedgerMember | None, new: LedgerMember | None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The tags a member renamed from `old` carries (confirmed, in doubt), by the two entries
    as the pass read them: the old member's, and in doubt also those the new address's entry
    holds (`new`: an earlier attempt of this email change, written ahead, whose tag call may
    have been applied to the renamed member with its answer lost, e.g. the worker died before
    recording). The planner settles exactly these after the rename; the ledger records them."""
    tags = old.tags if old is not None else ()
    maybe = (*(old.maybe_tags if old is not None else ()), *(new.maybe_tags if new else ()))
    return tags, maybe


def _upsert_ops(
    desired: DesiredMember,
    ledger: LedgerMember | None,
    tags_already_set: Sequence[str],
    double_optin: bool,
    tags_maybe_set: Sequence[str] = (),
) -> list[Op]:
    ops: list[Op] = []
    archived = ledger is not None and ledger.maybe_archived
    needs_put = ledger is None or archived or ledger.fields_hash != desired.fields_hash
    if needs_put:
        # Restore a member mcsync archived to the status it had (`archive_status`, noted just
        # before its archive), and only that: never raise anyone's status. The ledger's `status`
        # may be stale (the record keeps a status it is not given), so it is no evidence.
        before = ledger.archive_status if ledger is not None else None
        restore = before if archived and before in ACTIVE_STATUSES else None
        ops.append(
            UpsertMember(
                email_hash=desired.email_hash,
                email=desired.email,
                merge_fields=desired.merge_fields,
                status_if_new=status_if_new(double_optin),
                status=restore,
            )
        )
    active, inactive = tag_changes(desired.tags, tags_already_set, tags_maybe_set)
    if active or inactive:
        ops.append(UpdateTags(desired.email_hash, active, inactive))
    return ops


def plan_member_ops(
    *,
    changed: Sequence[Contact],
    deleted: Sequence[UUID],
    sharing: Sequence[Contact],
    links: Mapping[UUID, str],
    ledger: Mapping[str, LedgerMember],
    recency: Mapping[UUID, datetime] | None = None,
    double_optin: bool = False,
    maybe_links: Mapping[UUID, Sequence[str]] | None = None,
    queued: Collection[UUID] = (),
) -> Plan:
    """Plan the calls that make Mailchimp agree with the contacts that changed.

    changed:  current rows of the changed contacts that still exist.
    deleted:  ids of changed contacts whose rows are gone.
    sharing:  current rows of every contact of the user whose address is one of the affected
              addresses (the changed contacts' current and previous ones); may include `changed`.
    links:    contact id -> hash of the member it was last synced as.
    maybe_links: contact id -> members it may have become (calls whose answer was lost).
    ledger:   hash -> what Mailchimp was last told, for every affected address.
    queued:   contacts of `sharing`, outside this batch, still to be handled by a pass of their
              own (a change queued, or never synced: inside an import not yet expanded).
    """
    plan = Plan()
    by_id = {c.id: c for c in sharing}
    by_id.update({c.id: c for c in changed})
    desired = desired_members(by_id.values(), recency)
    dependents = _dependents(plan, changed, deleted, links, maybe_links or {})
    renames = _renames(changed, links, plan.links, desired, ledger)
    for email_hash in sorted(dependents):
        if email_hash in renames.values():
            continue  # planned with its rename target
        contact_ids = set(dependents[email_hash])
        target = desired.get(email_hash)
        old_hash = renames.get(email_hash)
        if target is None:
            member = _archive_plan(email_hash, ledger.get(email_hash), contact_ids)
        elif old_hash is None:
            member = _upsert_plan(target, ledger.get(email_hash), contact_ids, double_optin)
        else:
            contact_ids |= dependents.get(old_hash, set())
            member = _rename_plan(
                target,
                old_hash,
                ledger[old_hash],
                ledger.get(email_hash),
                contact_ids,
                double_optin,
            )
        plan.members.append(member)
    plan.maybe_links = borrowed_links(plan, queued)
    return plan


def borrowed_links(plan: Plan, queued: Collection[UUID]) -> dict[UUID, str]:
    """The members whose calls send what other contacts still to be handled have (fields from
    the most recent one, the union of tags), per such contact: it may be that member from now
    on.

    Their own rows wait; if one of those contacts moves away (or is deleted) before its row is
    handled, its pass must look at the member it gave its fields and tags to, or the member
    keeps them. Written ahead as a maybe-link (as for the batch's own contacts), it does, also
    when this pass's answers are lost or its worker dies before recording (found by the
    unseeded property test)."""
    if not queued:
        return {}
    out: dict[UUID, str] = {}
    for member in plan.members:
        if member.desired is None or not member.ops:
            continue
        for contact_id in member.desired.contact_ids:
            if contact_id in queued and contact_id not in plan.links:
                out[contact_id] = member.email_hash
    return out


def _dependents(
    plan: Plan,
    changed: Sequence[Contact],
    deleted: Sequence[UUID],
    links: Mapping[UUID, str],
    maybe_links: Mapping[UUID, Sequence[str]],
) -> dict[str, set[UUID]]:
    """Which members are affected, and which changed contacts depend on each. Notes in `plan`
    where each changed contact is to be linked, and the addresses that cannot be synced."""
    dependents: dict[str, set[UUID]] = {}
    for contact in changed:
        email = normalize_email(contact.email)
        if email is None:
            if contact.email is not None and contact.email.strip(ASCII_SPACES):
                plan.rejections.append(
                    Rejection(contact.id, contact.email, "invalid email address", "email_address")
                )
            plan.links[contact.id] = None
        else:
            email_hash = subscriber_hash(email)
            dependents.setdefault(email_hash, set()).add(contact.id)
            plan.links[contact.id] = email_hash
    for contact_id in deleted:
        plan.links[contact_id] = None
    for contact_id in [c.id for c in changed] + list(deleted):
        old = links.get(contact_id)
        if old is not None:
            dependents.setdefault(old, set()).add(contact_id)
        for maybe in maybe_links.get(contact_id, ()):
            dependents.setdefault(maybe, set()).add(contact_id)
    return dependents


def _renames(
    changed: Sequence[Contact],
    links: Mapping[UUID, str],
    new_links: Mapping[UUID, str | None],
    desired: Mapping[str, DesiredMember],
    ledger: Mapping[str, LedgerMember],
) -> dict[str, str]:
    """Email changes, new hash -> old hash: a contact whose old member is left with no contact,
    moving to an address mcsync does not know yet, renames that member instead of creating a
    duplicate."""
    renames: dict[str, str] = {}
    for contact in changed:
        old = links.get(contact.id)
        new = new_links.get(contact.id)
        if old is None or new is None or old == new:
            continue
        old_ledger = ledger.get(old)
        new_ledger = ledger.get(new)
        if (
            old not in desired
            and old not in renames.values()
            and new not in renames
            and old_ledger is not None
            and not old_ledger.maybe_archived
            and (new_ledger is None or new_ledger.pending_rename_from == old)
        ):
            renames[new] = old
    return renames


def _sorted_ids(contact_ids: set[UUID]) -> tuple[UUID, ...]:
    if len(contact_ids) == 1:
        return tuple(contact_ids)  # nothing to order (and no text made of the id)
    return tuple(sorted(contact_ids, key=str))


def _archive_plan(
    email_hash: str, entry: LedgerMember | None, contact_ids: set[UUID]
) -> MemberPlan:
    """No contact wants the member any more: archive it if mcsync owns it and it is live."""
    ops: list[Op] = []
    if entry is not None and not entry.archived:
        ops.append(ArchiveMember(email_hash))
    return MemberPlan(email_hash, tuple(ops), None, _sorted_ids(contact_ids))


def _upsert_plan(
    target: DesiredMember, entry: LedgerMember | None, contact_ids: set[UUID], double_optin: bool
) -> MemberPlan:
    if entry is None:
        # A member mcsync never told Mailchimp about (an import's every contact): a PUT with
        # `status_if_new`, then every wanted tag made active, none inactive (mcsync set none);
        # `_upsert_ops` answers the same (tests/unit/test_planner_fast_paths.py), with more work.
        upsert = UpsertMember(
            email_hash=target.email_hash,
            email=target.email,
            merge_fields=target.merge_fields,
            status_if_new=status_if_new(double_optin),
        )
        ops_new: tuple[Op, ...] = (
            (upsert, UpdateTags(target.email_hash, target.tags, ())) if target.tags else (upsert,)
        )
        return MemberPlan(target.email_hash, ops_new, target, _sorted_ids(contact_ids))
    ops = _upsert_ops(
        target,
        entry,
        entry.tags if entry else (),
        double_optin,
        entry.maybe_tags if entry else (),
    )
    return MemberPlan(target.email_hash, tuple(ops), target, _sorted_ids(contact_ids))


def _rename_plan(
    target: DesiredMember,
    old_hash: str,
    old_entry: LedgerMember,
    new_entry: LedgerMember | None,
    contact_ids: set[UUID],
    double_optin: bool,
) -> MemberPlan:
    """Rename the old member to the target's address, then settle its tags (those of
    `tags_after_rename`); if the address is taken, or the old member is gone, create the target
    fresh instead."""
    fresh = _upsert_ops(target, None, (), double_optin)
    active, inactive = tag_changes(target.tags, *tags_after_rename(old_entry, new_entry))
    after_rename: list[Op] = []
    if active or inactive:
        after_rename.append(UpdateTags(target.email_hash, active, inactive))
    rename = RenameMember(
        old_hash=old_hash,
        email_hash=target.email_hash,
        email=target.email,
        merge_fields=target.merge_fields,
        on_conflict=(*fresh, ArchiveMember(old_hash)),
        on_missing=tuple(fresh),
    )
    return MemberPlan(
        target.email_hash,
        (rename, *after_rename),
        target,
        _sorted_ids(contact_ids),
        renamed_from=old_hash,
    )
