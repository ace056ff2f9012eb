"""The ledger's rules: what `mailchimp_members` says before each call and after each answer.

Pure: no I/O. The planner (mcsync.mirror) reads the ledger to decide the calls; this module
says what the ledger must record around them, and the worker (mcsync.worker.apply) only makes
the calls and hands their answers here. Two moments:

- **before the calls** (`write_ahead_ledger`): what they *may* do, in case an answer is lost
  (a timeout, a killed worker): a member mcsync may now own, tags in doubt (`maybe_tags`), an
  email change that may have happened (`pending_rename_from`);
- **after each answer** (`MemberLedger`): what Mailchimp confirmed, one named method per answer
  (an upsert, a tag call, an archive or its refusal, a rename or its failure, a batch
  subscribe), and at the end of a pass, the doubt about calls that never went out settled.

docs/design.md ("Write-ahead, then confirm") says why each rule is there;
tests/model/test_ledger.py has a table of cases per rule.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from mcsync.mirror import (
    LedgerMember,
    MemberPlan,
    Op,
    RenameMember,
    UpdateTags,
    UpsertMember,
    clean_tags,
    tags_after_rename,
)

# --- before the calls ---------------------------------------------------------------------


def write_ahead_ledger(
    plans: Iterable[MemberPlan], ledger: Mapping[str, LedgerMember]
) -> list[LedgerMember]:
    """What the ledger must say *before* the calls go out.

    A call can take effect in Mailchimp while its answer is lost (a timeout, a killed worker).
    Recording beforehand that mcsync may own a member, and that the tags it is adding or
    removing are in doubt (`maybe_tags`: neither confirmed set nor confirmed gone), keeps the
    promises "a deleted contact's member is archived", "a removed tag is made inactive" and
    "a wanted tag is set" even then. A possibly-stale entry costs at most one extra idempotent
    call later; its `fields_hash` is cleared so the next pass re-sends the fields."""
    out: dict[str, LedgerMember] = {}

    def touch(
        email_hash: str,
        email: str,
        base: LedgerMember | None,
        adding: Iterable[str],
        removing: Sequence[str] = (),
        *,
        fields_change: bool = True,
    ) -> None:
        current = out.get(email_hash) or base
        doubtful = [*(current.maybe_tags if current else ()), *adding, *removing]
        gone = {t.casefold() for t in removing}
        out[email_hash] = LedgerMember(
            email_hash=email_hash,
            email=email,
            fields_hash=current.fields_hash if current and not fields_change else None,
            tags=tuple(t for t in (current.tags if current else ()) if t.casefold() not in gone),
            maybe_tags=tuple(clean_tags(doubtful)),
            status=current.status if current else None,
            archived=current.archived if current else False,
            archive_status=current.archive_status if current else None,
            pending_rename_from=current.pending_rename_from if current else None,
        )

    for plan in plans:
        pending: list[Op] = list(plan.ops)
        while pending:
            op = pending.pop(0)
            if isinstance(op, UpsertMember):
                base = ledger.get(op.email_hash)
                if base is None and op.email_hash not in out:
                    # A member mcsync never told Mailchimp about (an import's): what `touch`
                    # writes for it, without its work (tests/unit/test_planner_fast_paths.py).
                    out[op.email_hash] = LedgerMember(op.email_hash, op.email, None, ())
                else:
                    touch(op.email_hash, op.email, base, ())
                if op.status is not None:
                    # A restore may bring the member back with its answer lost: no longer
                    # surely archived, but archived by mcsync if still so (archive_status kept),
                    # so a later pass archives it again or restores it, never neither.
                    out[op.email_hash] = replace(out[op.email_hash], archived=False)
            elif isinstance(op, UpdateTags):
                base = ledger.get(op.email_hash)
                email = out.get(op.email_hash) or base or plan.desired
                touch(
                    op.email_hash,
                    email.email if email else "",
                    base,
                    op.active,
                    op.inactive,
                    fields_change=False,
                )
            elif isinstance(op, RenameMember):
                # Owned from now on, and the old member's tags may move with it: in doubt on the
                # new address until Mailchimp says whether the rename happened (a refused one
                # settles them; the next pass asks again if the answer is lost).
                old = out.get(op.old_hash) or ledger.get(op.old_hash)
                moving = clean_tags([*old.tags, *old.maybe_tags]) if old is not None else []
                touch(op.email_hash, op.email, ledger.get(op.email_hash), moving)
                out[op.email_hash] = replace(out[op.email_hash], pending_rename_from=op.old_hash)
                # ...and the old address may be gone, tags and all: if the answer is lost and a
                # contact wants it again, its fields and tags are sent again (a PUT re-creates
                # it), never tags alone.
                if old is not None:
                    out[op.old_hash] = replace(
                        old, fields_hash=None, tags=(), maybe_tags=tuple(moving)
                    )
                pending.extend(op.on_conflict)
    return list(out.values())


# --- after each answer ---------------------------------------------------------------------


class Answer(Protocol):
    """What Mailchimp answered about a member (`mcsync.mailchimp.models.Member` is one): its
    address and status, each "" when the answer left it out."""

    @property
    def email_address(self) -> str: ...

    @property
    def status(self) -> str: ...


@dataclass
class MemberLedger:
    """The ledger as one member plan's calls leave it.

    `before`: the ledger as the pass read it (what Mailchimp had confirmed); `ahead`: the
    entries written before the calls went out (`write_ahead_ledger`); `confirmed`: what the
    answers so far say, hash -> entry (None: forget the entry). Only `confirmed` is written
    back; an entry it does not name stays as written ahead."""

    before: Mapping[str, LedgerMember]
    ahead: Mapping[str, LedgerMember]
    confirmed: dict[str, LedgerMember | None] = field(default_factory=dict)

    def current(self, email_hash: str) -> LedgerMember | None:
        """The member's entry as this pass knows it so far."""
        if email_hash in self.confirmed:
            return self.confirmed[email_hash]
        return self.ahead.get(email_hash) or self.before.get(email_hash)

    def member_confirmed(
        self,
        email_hash: str,
        answer: Answer,
        fields_hash: str | None,
        tags: Sequence[str],
        maybe_tags: Sequence[str] = (),
    ) -> None:
        """Mailchimp answered with the member: record it as it answered, with these tags
        confirmed and those in doubt (a confirmed tag is no longer in doubt)."""
        previous = self.current(email_hash)
        # Mailchimp may leave fields out of an answer (models default them to ""): the address
        # then is the one mcsync sent or last knew, and an unknown status is no status.
        email = answer.email_address or (previous.email if previous is not None else "")
        self.confirmed[email_hash] = LedgerMember(
            email_hash=email_hash,
            email=email,
            fields_hash=fields_hash,
            tags=tuple(clean_tags(tags)),
            maybe_tags=_doubt_left(maybe_tags, tags),
            status=answer.status or None,
            archived=answer.status == "archived",
            archive_status=previous.archive_status
            if previous is not None and answer.status == "archived"
            else None,
        )

    def upserted(
        self, email_hash: str, answer: Answer, fields_hash: str | None, *, status_sent: str | None
    ) -> bool:
        """A PUT answered. False if the member is archived and stays so: Mailchimp applied
        nothing to an archived member sent without a status, so no tag the written-ahead entry
        put in doubt came near it and only what was confirmed before this pass stays mcsync's
        (a marketer's tag of the same name is never taken)."""
        left_archived = answer.status == "archived" and status_sent is None
        source = self.before.get(email_hash) if left_archived else self.current(email_hash)
        self.member_confirmed(email_hash, answer, fields_hash, *_tags_of(source))
        return not left_archived

    def batched(
        self, email_hash: str, answer: Answer, fields_hash: str | None, active: Sequence[str]
    ) -> None:
        """A batch subscribe confirmed the member, adding the tags `active`."""
        previous = self.current(email_hash)
        if answer.status == "archived":
            # Batch subscribe changes nothing on an archived member (no status was sent): the
            # tags in the request were not added, whatever the written-ahead entry feared.
            tags, maybe = _tags_of(self.before.get(email_hash))
        else:
            tags = (*(previous.tags if previous else ()), *active)
            maybe = previous.maybe_tags if previous else ()
        self.member_confirmed(email_hash, answer, fields_hash, tags, maybe)

    def tags_updated(
        self, email_hash: str, active: Sequence[str], inactive: Sequence[str]
    ) -> None:
        """A tag call answered: `active` are set, `inactive` gone, neither in doubt any more."""
        current = self.current(email_hash)
        if current is None:
            return
        gone = {t.casefold() for t in inactive}
        settled = gone | {t.casefold() for t in active}
        kept = [t for t in current.tags if t.casefold() not in gone]
        self.confirmed[email_hash] = replace(
            current,
            tags=tuple(clean_tags([*kept, *active])),
            maybe_tags=tuple(t for t in current.maybe_tags if t.casefold() not in settled),
        )

    def creation_refused(self, email_hash: str) -> None:
        """Mailchimp refused to create the member: the write-ahead entry claims nothing real."""
        if self.before.get(email_hash) is None and email_hash not in self.confirmed:
            self.confirmed[email_hash] = None

    def gone(self, email_hash: str) -> None:
        """The member is not in Mailchimp (404): nothing left to own."""
        self.confirmed[email_hash] = None

    def status_to_restore(self, email_hash: str) -> str:
        """An archive found the member archived already: by mcsync, if it noted the status just
        before (an archive whose answer was lost), else by someone else, whose archive must
        stand: no restore ("archived" is never restored)."""
        current = self.current(email_hash)
        noted = current.archive_status if current is not None else None
        return noted or "archived"

    def archived(self, email_hash: str, status: str) -> None:
        """The member is archived, by mcsync with `status` the one it had (a later restore sets
        it again), or by someone else (`status` "archived": never restored)."""
        current = self.current(email_hash)
        if current is not None:
            self.confirmed[email_hash] = replace(
                current, archived=True, status=status, archive_status=status
            )

    def archive_refused(self, email_hash: str) -> None:
        """Mailchimp will not archive the member (405: pending, cleaned, or archived
        meanwhile), and it is left as it is, for good: the entry is retired (`archived` with no
        `archive_status` nor status, so it is never archived again nor restored, even if
        archived by hand later) and keeps its tags (a returning contact still has mcsync's
        tags settled)."""
        current = self.current(email_hash)
        if current is not None:
            self.confirmed[email_hash] = replace(
                current, archived=True, status=None, archive_status=None
            )

    def tags_moving(self, old_hash: str) -> list[str]:
        """The tags an email change from `old_hash` carries: the old member's, as they were
        before this pass (its written-ahead entry holds them all in doubt, in case it is gone)."""
        before = self.before.get(old_hash)
        return [*before.tags, *before.maybe_tags] if before is not None else []

    def may_have_renamed(self, op: RenameMember) -> bool:
        """An email change found its old member gone: did an earlier one of ours happen, with
        only its answer lost? (The new address's entry says so: `pending_rename_from`.)"""
        ahead = self.current(op.email_hash)
        return ahead is not None and ahead.pending_rename_from == op.old_hash

    def renamed(
        self, plan: MemberPlan, op: RenameMember, answer: Answer, fields_hash: str | None
    ) -> None:
        """The old member now has the new address: the old entry goes, the new one has the old
        member's tags (see `_moved`)."""
        self.confirmed[op.old_hash] = None
        tags = _moved(plan, self.before.get(op.old_hash), self.before.get(op.email_hash))
        self.member_confirmed(op.email_hash, answer, fields_hash, *tags)

    def rename_answered(self, plan: MemberPlan, op: RenameMember, answer: Answer) -> bool:
        """An email change answered with the old member. True if it moved to the new address;
        False if Mailchimp changed nothing (the old member is archived, by someone else: it is
        left be, and the new address becomes a member of its own, `op.on_missing`)."""
        moved = (
            not answer.email_address or answer.email_address.lower() == op.email.lower()
        )
        if answer.status == "archived" or not moved:
            old = self.current(op.old_hash)
            if old is not None:
                self.confirmed[op.old_hash] = replace(old, archived=True, status=answer.status)
            self.rename_did_not_happen(op, op.on_missing)
            return False
        self.renamed(plan, op, answer, plan.desired.fields_hash if plan.desired else None)
        return True

    def rename_did_not_happen(self, op: RenameMember, fallback: Sequence[Op]) -> None:
        """The written-ahead entry for the new address assumed the old member's tags might move
        with it. They did not: keep in doubt only the tags the fallback itself will send, so a
        marketer's tag on an existing member is never taken for one of ours."""
        sending = [t for o in fallback if isinstance(o, UpdateTags) for t in o.active]
        self.confirmed[op.email_hash] = LedgerMember(
            email_hash=op.email_hash,
            email=op.email,
            fields_hash=None,
            tags=(),
            maybe_tags=tuple(clean_tags(sending)),
        )

    def settle_unsent(self, plan: MemberPlan, asked: Mapping[str, Collection[str]]) -> None:
        """At the end of the pass: tags the written-ahead entry put in doubt for calls that never
        went out (an earlier call failed, or the account stopped) are not in doubt, mcsync sent
        nothing that could have set or removed them. `asked`: per member, the tag names
        (casefolded) of every call that went out this pass, whatever its answer. Left in doubt, a
        tag mcsync never sent would later be made inactive, and a marketer's tag of the same
        name with it."""
        hashes = {plan.email_hash, *([plan.renamed_from] if plan.renamed_from else [])}
        for email_hash in sorted(h for h in hashes if h in self.ahead):
            entry = self.current(email_hash)
            if entry is None:
                continue
            before = self.before.get(email_hash)
            doubted = {t.casefold() for t in (before.maybe_tags if before else ())}
            sent = asked.get(email_hash, set())
            unsent = {
                t.casefold()
                for t in entry.maybe_tags
                if t.casefold() not in doubted and t.casefold() not in sent
            }
            if not unsent:
                continue
            # A removal never sent leaves the tag as confirmed as it was before the pass.
            kept = [t for t in (before.tags if before else ()) if t.casefold() in unsent]
            self.confirmed[email_hash] = replace(
                entry,
                tags=tuple(clean_tags([*entry.tags, *kept])),
                maybe_tags=tuple(t for t in entry.maybe_tags if t.casefold() not in unsent),
            )


def _moved(
    plan: MemberPlan, old: LedgerMember | None, new: LedgerMember | None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The tags of a member renamed from `old` (its entry before the pass): the old member's,
    except those the plan's tag calls still to come change, which stay in doubt until Mailchimp
    confirms them (like every tag of a call whose answer may be lost), as do those in doubt
    before on either address (`new`: the new address's entry before the pass), the ones the
    planner settles after the rename (`mcsync.mirror.tags_after_rename`, one rule for both)."""
    tags, maybe = tags_after_rename(old, new)
    pending = [
        t
        for o in plan.ops
        if isinstance(o, UpdateTags) and o.email_hash == plan.email_hash
        for t in (*o.active, *o.inactive)
    ]
    doubted = {t.casefold() for t in pending}
    kept = tuple(t for t in tags if t.casefold() not in doubted)
    return kept, (*maybe, *pending)


def _doubt_left(maybe_tags: Sequence[str], confirmed: Sequence[str]) -> tuple[str, ...]:
    """The tags in doubt that are not confirmed (names match case-insensitively)."""
    if not maybe_tags:
        return ()
    sure = {t.casefold() for t in confirmed}
    return tuple(t for t in clean_tags(maybe_tags) if t.casefold() not in sure)


def _tags_of(entry: LedgerMember | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """An entry's confirmed and in-doubt tags (none without an entry)."""
    return (entry.tags, entry.maybe_tags) if entry is not None else ((), ())
