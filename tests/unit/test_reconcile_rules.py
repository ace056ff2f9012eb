"""Reconciliation's pure rules, as tables: what `compare_member` calls a difference between a
listed member and the mirror, and which writes `fixes_for` makes so the worker repairs it.
(tests/e2e/web/test_reconcile.py runs them through Sync Now against Postgres and the emulator.)"""

from __future__ import annotations

from uuid import UUID

import pytest

from mcsync.emails import subscriber_hash
from mcsync.mailchimp.models import Member, Tag
from mcsync.mirror import DesiredMember, LedgerMember
from mcsync.reconcile import Difference, Snapshot, compare_member, fixes_for, placeholder_id

USER = UUID(int=7)
AUDIENCE = "aud1"
ANN = "ann@x.com"
H = subscriber_hash(ANN)
C1, C2 = UUID(int=1), UUID(int=2)


def member(status: str = "subscribed", fname: str = "Ann", tags: tuple[str, ...] = ()) -> Member:
    return Member(
        email_address=ANN,
        status=status,
        merge_fields={"FNAME": fname},
        tags=[Tag(name=t) for t in tags],
    )


def desired(
    fname: str = "Ann", tags: tuple[str, ...] = (), ids: tuple[UUID, ...] = (C1,)
) -> DesiredMember:
    return DesiredMember(H, ANN, {"FNAME": fname}, tags, ids)


def ledger(
    tags: tuple[str, ...] = (), *, archived: bool = False, archive_status: str | None = None
) -> LedgerMember:
    return LedgerMember(H, ANN, "fh", tags, archived=archived, archive_status=archive_status)


def snap(
    want: DesiredMember | None = None,
    entry: LedgerMember | None = None,
    *,
    links: tuple[UUID, ...] = (),
    existing: tuple[UUID, ...] = (C1,),
    rejected: tuple[UUID, ...] = (),
    ignored: tuple[str, ...] = (),
) -> Snapshot:
    s = Snapshot(
        {H: want} if want else {},
        {H: entry} if entry else {},
        {H: list(links)} if links else {},
        set(existing),
        rejected=set(rejected),
    )
    if ignored:
        s.ignored_fields[C1] = set(ignored)
    return s


# (case, the listed member, the snapshot, the kinds of difference found)
COMPARE: list[tuple[str, Member, Snapshot, list[str]]] = [
    ("agrees", member(tags=("a",)), snap(desired(tags=("a",)), ledger(("a",))), []),
    ("a field edited by hand", member(fname="Bo"), snap(desired(), ledger()), ["fields"]),
    ("a refused field is not drift", member(fname="Bo"), snap(desired(), ignored=("FNAME",)), []),
    ("a tag removed by hand", member(), snap(desired(tags=("a",)), ledger(("a",))), ["tags"]),
    ("tag names compare casefolded", member(tags=(" A ",)), snap(desired(tags=("a",))), []),
    (
        "a tag mcsync set that no contact has now",
        member(tags=("a", "b")),
        snap(desired(tags=("a",)), ledger(("a", "b"))),
        ["stale_tags"],
    ),
    ("someone else's tag is left alone", member(tags=("vip",)), snap(desired(), ledger()), []),
    (
        "fields and tags at once",
        member(fname="Bo"),
        snap(desired(tags=("a",)), ledger(("a",))),
        ["fields", "tags"],
    ),
    (
        "archived by mcsync, wanted again",
        member("archived"),
        snap(desired(), ledger(archived=True)),
        ["restore"],
    ),
    (
        "an archive whose answer was lost counts as mcsync's",
        member("archived"),
        snap(desired(), ledger(archive_status="subscribed")),
        ["restore"],
    ),
    ("archived by someone else is never raised", member("archived"), snap(desired(), ledger()), []),
    ("every contact refused: not drift", member(fname="Bo"), snap(desired(), rejected=(C1,)), []),
    ("mcsync's member, no contact now", member(), snap(None, ledger(), links=(C1,)), ["orphan"]),
    ("not mcsync's member: none of its business", member(), snap(None, None), []),
    ("an orphan already archived", member("archived"), snap(None, ledger()), []),
    ("an orphan the ledger says archived", member(), snap(None, ledger(archived=True)), []),
]


@pytest.mark.parametrize(
    ("case", "listed", "mirror", "kinds"), COMPARE, ids=[c[0] for c in COMPARE]
)
def test_compare_member(case: str, listed: Member, mirror: Snapshot, kinds: list[str]) -> None:
    diffs = compare_member(listed, mirror)
    assert [d.kind for d in diffs] == kinds
    assert all(d.email_hash == H for d in diffs)


def _fixes(
    diffs: list[Difference], mirror: Snapshot, listed: Member | None = None
) -> dict[str, object]:
    fixes = fixes_for(
        diffs, mirror, user_id=USER, audience_id=AUDIENCE, members={H: listed} if listed else None
    )
    return {
        "resync": fixes.resync,
        "deletes": fixes.deletes,
        "adopt": fixes.adopt,
        "ledger_rows": fixes.ledger_rows,
        "ledger_deletes": fixes.ledger_deletes,
        "queued": fixes.queued,
    }


def _diff(kind: str, ids: tuple[UUID, ...] = (C1,)) -> Difference:
    return Difference(kind, H, ANN, "", ids)


NOTHING: dict[str, object] = {
    "resync": set(), "deletes": {}, "adopt": {}, "ledger_rows": {}, "ledger_deletes": set(),
}  # fmt: skip

# (case, the differences, the snapshot, the member as listed, what is written beyond NOTHING)
FIXES: list[tuple[str, list[Difference], Snapshot, Member | None, dict[str, object]]] = [
    ("no difference, no write", [], snap(desired(), ledger()), None, {"queued": 0}),
    (
        "missing, the ledger knew it: forget it and resync",
        [_diff("missing")],
        snap(desired(), ledger()),
        None,
        {"resync": {C1}, "ledger_deletes": {H}, "queued": 1},
    ),
    (
        "missing, never in the ledger: resync alone (the planner sends everything)",
        [_diff("missing")],
        snap(desired()),
        None,
        {"resync": {C1}, "queued": 1},
    ),
    (
        "fields edited: forget the fields sent",
        [_diff("fields")],
        snap(desired(), ledger(("a",))),
        None,
        {
            "resync": {C1},
            "ledger_rows": {H: {"email_hash": H, "forget_fields": True, "tags": ["a"]}},
            "queued": 1,
        },
    ),
    (
        "a tag removed: forget having set it, keep the ones Mailchimp has",
        [_diff("tags")],
        snap(desired(tags=("a", "b")), ledger(("a", "b"))),
        member(tags=("b",)),
        {
            "resync": {C1},
            "ledger_rows": {H: {"email_hash": H, "forget_fields": False, "tags": ["b"]}},
            "queued": 1,
        },
    ),
    (
        "restore: resync only",
        [_diff("restore")],
        snap(desired(), ledger(archived=True)),
        None,
        {"resync": {C1}, "queued": 1},
    ),
    (
        "orphan whose contact is gone: delete it through the worker",
        [_diff("orphan")],
        snap(None, ledger(), links=(C2,), existing=()),
        None,
        {"deletes": {C2: ANN}, "queued": 1},
    ),
    (
        "orphan whose contact is still here (another address): resync it",
        [_diff("orphan")],
        snap(None, ledger(), links=(C1,), existing=(C1,)),
        None,
        {"resync": {C1}, "queued": 1},
    ),
    (
        "orphan with no link left: adopted under a placeholder contact, then deleted",
        [_diff("orphan", ())],
        snap(None, ledger()),
        None,
        {
            "adopt": {placeholder_id(USER, AUDIENCE, H): H},
            "deletes": {placeholder_id(USER, AUDIENCE, H): ANN},
            "queued": 1,
        },
    ),
]


@pytest.mark.parametrize(
    ("case", "diffs", "mirror", "listed", "written"), FIXES, ids=[c[0] for c in FIXES]
)
def test_fixes_for(
    case: str,
    diffs: list[Difference],
    mirror: Snapshot,
    listed: Member | None,
    written: dict[str, object],
) -> None:
    assert _fixes(diffs, mirror, listed) == {**NOTHING, **written}


def test_the_placeholder_is_stable_per_user_audience_and_member() -> None:
    """A resumed run adopts an orphan under the same id; another audience, another id."""
    assert placeholder_id(USER, AUDIENCE, H) == placeholder_id(USER, AUDIENCE, H)
    assert placeholder_id(USER, "aud2", H) != placeholder_id(USER, AUDIENCE, H)
