"""The ledger's rules (`mcsync.ledger`), as tables: what the ledger says before each call
(`write_ahead_ledger`) and after each answer (`MemberLedger`): confirm, settle what was never
sent, rename, archive, refused archive. Pure: no Postgres, no HTTP. The model-based tests in
test_mirror.py drive the same rules through the real worker against the emulator, with lost
answers; these name each rule on its own."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import pytest

from mcsync.emails import subscriber_hash
from mcsync.ledger import MemberLedger, write_ahead_ledger
from mcsync.mirror import (
    ArchiveMember,
    DesiredMember,
    LedgerMember,
    MemberPlan,
    Op,
    RenameMember,
    UpdateTags,
    UpsertMember,
)

ANN, BOB = "ann@x.com", "bob@x.com"


def h(email: str) -> str:
    return subscriber_hash(email)


def entry(
    email: str = ANN,
    tags: Sequence[str] = (),
    maybe: Sequence[str] = (),
    *,
    fields: str | None = "f1",
    status: str | None = "subscribed",
    archived: bool = False,
    archive_status: str | None = None,
    pending_rename_from: str | None = None,
) -> LedgerMember:
    return LedgerMember(
        email_hash=h(email),
        email=email,
        fields_hash=fields,
        tags=tuple(tags),
        maybe_tags=tuple(maybe),
        status=status,
        archived=archived,
        archive_status=archive_status,
        pending_rename_from=pending_rename_from,
    )


@dataclass(frozen=True)
class Reply:
    """Mailchimp's answer about a member, as the ledger reads it."""

    email_address: str = ANN
    status: str = "subscribed"


def upsert(email: str = ANN, status: str | None = None) -> UpsertMember:
    return UpsertMember(h(email), email, {"FNAME": "Ann"}, "subscribed", status)


def tags(email: str = ANN, active: Sequence[str] = (), inactive: Sequence[str] = ()) -> UpdateTags:
    return UpdateTags(h(email), tuple(active), tuple(inactive))


def rename_op(old: str = ANN, new: str = BOB) -> RenameMember:
    return RenameMember(
        old_hash=h(old),
        email_hash=h(new),
        email=new,
        merge_fields={"FNAME": "Ann"},
        on_conflict=(upsert(new), ArchiveMember(h(old))),
        on_missing=(upsert(new),),
    )


def rename(old: str = ANN, new: str = BOB, after: Sequence[Op] = ()) -> MemberPlan:
    return member_plan(new, rename_op(old, new), *after, renamed_from=h(old))


def member_plan(email: str, *ops: Op, renamed_from: str | None = None) -> MemberPlan:
    desired = DesiredMember(h(email), email, {"FNAME": "Ann"}, (), ())
    return MemberPlan(h(email), tuple(ops), desired, (), renamed_from=renamed_from)


def by_hash(*entries: LedgerMember) -> dict[str, LedgerMember]:
    return {e.email_hash: e for e in entries}


# --- before the calls: write-ahead ---------------------------------------------------------

WRITE_AHEAD: list[tuple[str, MemberPlan, list[LedgerMember], list[LedgerMember]]] = [
    (
        "a new member: owned from now on, its fields to be sent again",
        member_plan(ANN, upsert()),
        [],
        [entry(fields=None, status=None)],
    ),
    (
        "an update: fields cleared, confirmed tags and status kept",
        member_plan(ANN, upsert()),
        [entry(tags=["vip"])],
        [entry(tags=["vip"], fields=None)],
    ),
    (
        "a restore: no longer surely archived, still archived by mcsync if so",
        member_plan(ANN, upsert(status="subscribed")),
        [entry(status="archived", archived=True, archive_status="subscribed")],
        [entry(fields=None, status="archived", archived=False, archive_status="subscribed")],
    ),
    (
        "tags added and removed: all in doubt, the removed ones no longer confirmed",
        member_plan(ANN, tags(active=["new"], inactive=["old"])),
        [entry(tags=["old", "kept"])],
        [entry(tags=["kept"], maybe=["new", "old"])],
    ),
    (
        "an upsert then tags: fields cleared, tags in doubt",
        member_plan(ANN, upsert(), tags(active=["vip"])),
        [],
        [entry(fields=None, status=None, maybe=["vip"])],
    ),
    (
        "an email change: the new address may carry the old tags, the old may be gone",
        rename(),
        [entry(tags=["vip"], maybe=["lead"])],
        [
            entry(BOB, maybe=["vip", "lead"], fields=None, status=None, pending_rename_from=h(ANN)),
            entry(ANN, maybe=["vip", "lead"], fields=None),
        ],
    ),
]


@pytest.mark.parametrize(
    ("plan", "before", "expected"),
    [case[1:] for case in WRITE_AHEAD],
    ids=[case[0] for case in WRITE_AHEAD],
)
def test_write_ahead(
    plan: MemberPlan, before: list[LedgerMember], expected: list[LedgerMember]
) -> None:
    assert by_hash(*write_ahead_ledger([plan], by_hash(*before))) == by_hash(*expected)


def test_write_ahead_archive_writes_nothing_ahead() -> None:
    """An archive's doubt is the status noted just before it (`mark_archiving`), not here."""
    plan = member_plan(ANN, ArchiveMember(h(ANN)))
    assert write_ahead_ledger([plan], by_hash(entry())) == []


# --- after each answer ---------------------------------------------------------------------


def rename_fields() -> str:
    plan = rename()
    assert plan.desired is not None
    return plan.desired.fields_hash


@dataclass(frozen=True)
class Case:
    """One answer: the ledger before the pass and as written ahead, what happened, and what
    the ledger must then say (hash -> entry, None: forgotten)."""

    name: str
    before: list[LedgerMember]
    ahead: list[LedgerMember]
    answer: Callable[[MemberLedger], object]
    expected: Mapping[str, LedgerMember | None]
    returns: object = None


def ledger_of(case: Case) -> MemberLedger:
    return MemberLedger(by_hash(*case.before), by_hash(*case.ahead))


ANSWERS: list[Case] = [
    # confirm
    Case(
        "a PUT confirms the member as answered, tags as written ahead",
        before=[],
        ahead=[entry(fields=None, status=None, maybe=["vip"])],
        answer=lambda led: led.upserted(h(ANN), Reply(), "f2", status_sent=None),
        expected={h(ANN): entry(fields="f2", maybe=["vip"])},
        returns=True,
    ),
    Case(
        "an answer without the address keeps the one mcsync knew; no status is no status",
        before=[entry()],
        ahead=[entry(fields=None)],
        answer=lambda led: led.upserted(h(ANN), Reply("", ""), "f2", status_sent=None),
        expected={h(ANN): entry(fields="f2", status=None)},
        returns=True,
    ),
    Case(
        "a PUT left archived: nothing applied, only the tags confirmed before stay mcsync's",
        before=[entry(tags=["vip"])],
        ahead=[entry(tags=["vip"], maybe=["new"], fields=None)],
        answer=lambda led: led.upserted(
            h(ANN), Reply(status="archived"), "f2", status_sent=None
        ),
        expected={h(ANN): entry(tags=["vip"], fields="f2", status="archived", archived=True)},
        returns=False,
    ),
    Case(
        "a restore answered: live again, no archive status left",
        before=[entry(status="archived", archived=True, archive_status="subscribed")],
        ahead=[entry(fields=None, status="archived", archive_status="subscribed")],
        answer=lambda led: led.upserted(h(ANN), Reply(), "f2", status_sent="subscribed"),
        expected={h(ANN): entry(fields="f2")},
        returns=True,
    ),
    Case(
        "a tag call answered: added set, removed gone, neither in doubt",
        before=[entry(tags=["old", "kept"])],
        ahead=[entry(tags=["kept"], maybe=["new", "old", "other"])],
        answer=lambda led: led.tags_updated(h(ANN), ["new"], ["old"]),
        expected={h(ANN): entry(tags=["kept", "new"], maybe=["other"])},
    ),
    Case(
        "a tag call for a member the ledger does not know records nothing",
        before=[],
        ahead=[],
        answer=lambda led: led.tags_updated(h(ANN), ["new"], []),
        expected={},
    ),
    Case(
        "a batch subscribe confirms the member with the tags it added",
        before=[entry(tags=["vip"])],
        ahead=[entry(tags=["vip"], maybe=["new"], fields=None)],
        answer=lambda led: led.batched(h(ANN), Reply(), "f2", ["new"]),
        expected={h(ANN): entry(tags=["vip", "new"], fields="f2")},
    ),
    Case(
        "a batch subscribe answers archived: its tags were not added",
        before=[entry(tags=["vip"], maybe=["old"])],
        ahead=[entry(tags=["vip"], maybe=["old", "new"], fields=None)],
        answer=lambda led: led.batched(h(ANN), Reply(status="archived"), "f2", ["new"]),
        expected={
            h(ANN): entry(
                tags=["vip"], maybe=["old"], fields="f2", status="archived", archived=True
            )
        },
    ),
    Case(
        "a refused creation: the written-ahead entry claims nothing real",
        before=[],
        ahead=[entry(fields=None, status=None)],
        answer=lambda led: led.creation_refused(h(ANN)),
        expected={h(ANN): None},
    ),
    Case(
        "a refused update: the member is still the one confirmed before",
        before=[entry()],
        ahead=[entry(fields=None)],
        answer=lambda led: led.creation_refused(h(ANN)),
        expected={},
    ),
    # archive
    Case(
        "an archive answered: archived by mcsync, the status it had noted",
        before=[entry(tags=["vip"])],
        ahead=[],
        answer=lambda led: led.archived(h(ANN), "subscribed"),
        expected={
            h(ANN): entry(
                tags=["vip"], status="subscribed", archived=True, archive_status="subscribed"
            )
        },
    ),
    Case(
        "found archived after an archive of ours whose answer was lost: the noted status",
        before=[entry(archive_status="pending")],
        ahead=[],
        answer=lambda led: led.archived(h(ANN), led.status_to_restore(h(ANN))),
        expected={
            h(ANN): entry(status="pending", archived=True, archive_status="pending")
        },
    ),
    Case(
        "found archived by someone else: it stays so, never restored",
        before=[entry()],
        ahead=[],
        answer=lambda led: led.archived(h(ANN), led.status_to_restore(h(ANN))),
        expected={
            h(ANN): entry(status="archived", archived=True, archive_status="archived")
        },
    ),
    Case(
        "an archive finds the member gone: nothing left to own",
        before=[entry()],
        ahead=[],
        answer=lambda led: led.gone(h(ANN)),
        expected={h(ANN): None},
    ),
    Case(
        "a refused archive retires the entry for good, tags kept",
        before=[entry(tags=["vip"], status="pending", archive_status="pending")],
        ahead=[],
        answer=lambda led: led.archive_refused(h(ANN)),
        expected={h(ANN): entry(tags=["vip"], status=None, archived=True)},
    ),
    # rename
    Case(
        "a rename answered: the old entry goes, the new has its tags",
        before=[entry(tags=["vip"])],
        ahead=[
            entry(BOB, maybe=["vip"], fields=None, status=None, pending_rename_from=h(ANN)),
            entry(ANN, maybe=["vip"], fields=None),
        ],
        answer=lambda led: led.rename_answered(rename(), rename_op(), Reply(BOB)),
        expected={h(ANN): None, h(BOB): entry(BOB, tags=["vip"], fields=rename_fields())},
        returns=True,
    ),
    Case(
        "a rename whose tag calls are still to come: those tags stay in doubt",
        before=[entry(tags=["vip", "old"])],
        ahead=[],
        answer=lambda led: led.renamed(
            rename(after=[tags(BOB, inactive=["old"])]),
            rename_op(),
            Reply(BOB),
            "f2",
        ),
        expected={h(ANN): None, h(BOB): entry(BOB, tags=["vip"], maybe=["old"], fields="f2")},
    ),
    Case(
        "a rename of an archived member changed nothing: the old is archived, the new "
        "address keeps in doubt only what its fallback sends",
        before=[entry(tags=["vip"])],
        ahead=[entry(BOB, maybe=["vip"], fields=None, status=None, pending_rename_from=h(ANN))],
        answer=lambda led: led.rename_answered(
            rename(), rename_op(), Reply(ANN, "archived")
        ),
        expected={
            h(ANN): entry(tags=["vip"], status="archived", archived=True),
            h(BOB): entry(BOB, fields=None, status=None),
        },
        returns=False,
    ),
    Case(
        "a rename refused as a conflict: the fallback's tags alone are in doubt",
        before=[entry(tags=["vip"])],
        ahead=[entry(BOB, maybe=["vip"], fields=None, status=None, pending_rename_from=h(ANN))],
        answer=lambda led: led.rename_did_not_happen(
            rename_op(),
            (upsert(BOB), tags(BOB, active=["lead"]), ArchiveMember(h(ANN))),
        ),
        expected={h(BOB): entry(BOB, maybe=["lead"], fields=None, status=None)},
    ),
    Case(
        "the old member gone, and our earlier rename pending: it may have happened",
        before=[],
        ahead=[entry(BOB, fields=None, status=None, pending_rename_from=h(ANN))],
        answer=lambda led: led.may_have_renamed(rename_op()),
        expected={},
        returns=True,
    ),
    Case(
        "the old member gone, no rename of ours pending: none happened",
        before=[],
        ahead=[entry(BOB, fields=None, status=None)],
        answer=lambda led: led.may_have_renamed(rename_op()),
        expected={},
        returns=False,
    ),
]


@pytest.mark.parametrize("case", ANSWERS, ids=[c.name for c in ANSWERS])
def test_after_the_answer(case: Case) -> None:
    led = ledger_of(case)
    assert case.answer(led) == case.returns
    assert led.confirmed == dict(case.expected)


# --- at the end of a pass: settle what was never sent ---------------------------------------

SETTLE: list[tuple[str, list[LedgerMember], LedgerMember, set[str], LedgerMember | None]] = [
    (
        "a tag written ahead whose call never went out is not in doubt",
        [entry(tags=["vip"])],
        entry(tags=["vip"], maybe=["new"], fields=None),
        set(),
        entry(tags=["vip"], fields=None),
    ),
    (
        "a removal never sent leaves the tag as confirmed as before",
        [entry(tags=["vip", "old"])],
        entry(tags=["vip"], maybe=["old"]),
        set(),
        entry(tags=["vip", "old"]),
    ),
    (
        "a tag whose call went out stays in doubt until answered",
        [entry(tags=["vip"])],
        entry(tags=["vip"], maybe=["new"]),
        {"new"},
        None,
    ),
    (
        "a tag in doubt before the pass stays in doubt",
        [entry(maybe=["lost"])],
        entry(maybe=["lost", "new"]),
        set(),
        entry(maybe=["lost"]),
    ),
]


@pytest.mark.parametrize(
    ("before", "ahead", "asked", "expected"),
    [case[1:] for case in SETTLE],
    ids=[case[0] for case in SETTLE],
)
def test_settle_unsent(
    before: list[LedgerMember],
    ahead: LedgerMember,
    asked: set[str],
    expected: LedgerMember | None,
) -> None:
    led = MemberLedger(by_hash(*before), by_hash(ahead))
    led.settle_unsent(member_plan(ANN, tags(active=["new"])), {h(ANN): asked})
    assert led.confirmed == ({h(ANN): expected} if expected is not None else {})


def test_settle_unsent_reads_the_answers_so_far() -> None:
    """A confirmed answer is settled already: nothing unsent is left in it."""
    led = MemberLedger(by_hash(entry()), by_hash(entry(maybe=["new"])))
    led.tags_updated(h(ANN), ["new"], [])
    confirmed = dict(led.confirmed)
    led.settle_unsent(member_plan(ANN, tags(active=["new"])), {h(ANN): {"new"}})
    assert led.confirmed == confirmed == {h(ANN): entry(tags=["new"])}


def test_settle_unsent_covers_the_old_address_of_a_rename() -> None:
    before = entry(tags=["vip"])
    ahead = write_ahead_ledger([rename()], by_hash(before))
    led = MemberLedger(by_hash(before), by_hash(*ahead))
    led.settle_unsent(rename(), {})  # the email change never went out
    assert led.confirmed == {
        h(ANN): replace(before, fields_hash=None, tags=("vip",)),
        h(BOB): entry(BOB, fields=None, status=None, pending_rename_from=h(ANN)),
    }
