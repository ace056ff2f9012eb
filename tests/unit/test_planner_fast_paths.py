"""The planner's fast paths answer exactly what the plain formulas they replace answered:
`fields_hash` (written out without a JSON encoder per call; ledgers hold its hashes),
`clean_tags` (one casefold per tag; a tuple's or a list's answer remembered), `merge_fields_of`
(short ASCII text not encoded to be measured), `desired_members` (a contact alone at its address is
not sorted), a member mcsync never told Mailchimp about planned without the general rule's
work, and written ahead without it (`write_ahead_ledger`), on any input."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from uuid import UUID

from hypothesis import given
from hypothesis import strategies as st

from mcsync.emails import normalize_email, subscriber_hash
from mcsync.ledger import write_ahead_ledger
from mcsync.mirror import (
    MERGE_TEXT_LIMIT,
    TAG_NAME_LIMIT,
    Contact,
    DesiredMember,
    LedgerMember,
    MemberPlan,
    UpdateTags,
    UpsertMember,
    _upsert_ops,
    _upsert_plan,
    clean_tags,
    desired_members,
    fields_hash,
    merge_fields_of,
)


def hash_as_stored(email: str, merge_fields: dict[str, str]) -> str:
    canonical = json.dumps([email, sorted(merge_fields.items())], ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def tags_as_before(tags: Iterable[str | None]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for tag in tags:
        name = (tag or "").strip()[:TAG_NAME_LIMIT].strip()
        if name and name.casefold() not in seen:
            seen.add(name.casefold())
            out.append(name)
    return out


@given(st.text(), st.dictionaries(st.text(), st.text(), max_size=6))
def test_fields_hash_is_the_stored_formula(email: str, merge_fields: dict[str, str]) -> None:
    assert fields_hash(email, merge_fields) == hash_as_stored(email, merge_fields)


def test_fields_hash_on_text_json_escapes() -> None:
    tricky = {"FNAME": 'Zoë "Z" \\ \n\t\x00\u2028', "LNAME": "\ud7ff𝄞", "PHONE": ""}
    assert fields_hash("a@b.io", tricky) == hash_as_stored("a@b.io", tricky)
    assert fields_hash("a@b.io", {}) == hash_as_stored("a@b.io", {})


@given(
    st.lists(
        st.one_of(
            st.none(),
            st.text(),
            st.text(min_size=95, max_size=110),
            st.sampled_from(["VIP", "vip", " Vip ", "ǅ", "ǆ", "ß", "SS", "  "]),
        ),
        max_size=8,
    )
)
def test_clean_tags_is_the_former_rule(tags: list[str | None]) -> None:
    expected = tags_as_before(tags)
    assert clean_tags(tags) == expected  # type: ignore[arg-type]
    assert clean_tags(tuple(tags)) == expected  # type: ignore[arg-type]
    assert clean_tags(iter(tags)) == expected  # type: ignore[arg-type]
    # The remembered answer is never handed out to be changed.
    clean_tags(tuple(tags)).append("changed")  # type: ignore[arg-type]
    assert clean_tags(tuple(tags)) == expected  # type: ignore[arg-type]


def truncated_as_before(value: str | None) -> str:
    text = (value or "").strip()
    encoded = text.encode()
    if len(encoded) <= MERGE_TEXT_LIMIT:
        return text
    return encoded[:MERGE_TEXT_LIMIT].decode(errors="ignore")


@given(
    st.lists(
        st.one_of(
            st.none(),
            st.text(),
            st.text(min_size=60, max_size=300),
            st.text(alphabet="é𝄞 ab", min_size=60, max_size=140),
        ),
        max_size=4,
    )
)
def test_merge_fields_of_is_the_former_rule(values: list[str | None]) -> None:
    fields = tuple((f"F{i}", v) for i, v in enumerate(values))
    contact = Contact(id=UUID(int=1), email="a@b.io", merge_fields=fields)
    expected = {f"F{i}": truncated_as_before(v) for i, v in enumerate(values)}
    assert merge_fields_of(contact) == expected


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def desired_as_before(
    contacts: Iterable[Contact], recency: Mapping[UUID, datetime]
) -> dict[str, DesiredMember]:
    groups: dict[str, list[Contact]] = {}
    for contact in contacts:
        email = normalize_email(contact.email)
        if email is not None:
            groups.setdefault(subscriber_hash(email), []).append(contact)
    out: dict[str, DesiredMember] = {}
    for email_hash, group in groups.items():
        group.sort(key=lambda c: (recency.get(c.id, _EPOCH), str(c.id)), reverse=True)
        lead = group[0]
        email = normalize_email(lead.email)
        assert email is not None
        out[email_hash] = DesiredMember(
            email_hash=email_hash,
            email=email,
            merge_fields=merge_fields_of(lead),
            tags=tuple(clean_tags(t for c in group for t in c.tags)),
            contact_ids=tuple(sorted((c.id for c in group), key=str)),
        )
    return out


contacts = st.lists(
    st.builds(
        Contact,
        id=st.uuids(),
        email=st.sampled_from([None, "", "ann@x.io", " Ann@X.io ", "ANN@x.io", "bo@y.org", "x"]),
        merge_fields=st.just((("FNAME", "A"),)) | st.just((("FNAME", "B"), ("LNAME", "C"))),
        tags=st.lists(st.sampled_from(["vip", "VIP", " lead", ""]), max_size=3).map(tuple),
    ),
    max_size=6,
    unique_by=lambda c: c.id,
)


@given(contacts, st.data())
def test_desired_members_is_the_former_rule(people: list[Contact], data: st.DataObject) -> None:
    at = st.datetimes(timezones=st.just(UTC)) | st.none()
    recency = {c.id: t for c in people if (t := data.draw(at)) is not None}
    assert desired_members(people, recency) == desired_as_before(people, recency)
    assert desired_members(reversed(people), recency) == desired_members(people, recency)


@given(contacts, st.booleans(), st.sets(st.uuids(), min_size=0, max_size=3))
def test_a_new_member_is_planned_as_the_general_rule_plans_it(
    people: list[Contact], double_optin: bool, others: set[UUID]
) -> None:
    for target in desired_members(people).values():
        ids = {*target.contact_ids, *others}
        general = _upsert_ops(target, None, (), double_optin, ())
        assert _upsert_plan(target, None, ids, double_optin) == MemberPlan(
            target.email_hash, tuple(general), target, tuple(sorted(ids, key=str))
        )


def written_ahead_as_before(email_hash: str, email: str) -> LedgerMember:
    """What `write_ahead_ledger`'s general rule writes before a PUT of an unknown member."""
    return LedgerMember(
        email_hash=email_hash,
        email=email,
        fields_hash=None,
        tags=(),
        maybe_tags=tuple(clean_tags([])),
        status=None,
        archived=False,
        archive_status=None,
        pending_rename_from=None,
    )


@given(contacts, st.booleans())
def test_a_new_member_is_written_ahead_as_the_general_rule_writes_it(
    people: list[Contact], double_optin: bool
) -> None:
    targets = desired_members(people).values()
    plans = [_upsert_plan(t, None, set(t.contact_ids), double_optin) for t in targets]
    expected = {}
    for t in targets:
        expected[t.email_hash] = written_ahead_as_before(t.email_hash, t.email)
        if t.tags:  # the tag call that follows: every wanted tag in doubt, none confirmed
            expected[t.email_hash] = replace(
                expected[t.email_hash], maybe_tags=tuple(clean_tags(list(t.tags)))
            )
    assert {m.email_hash: m for m in write_ahead_ledger(plans, {})} == expected


def test_a_member_upserted_twice_in_a_pass_is_written_ahead_by_the_general_rule() -> None:
    # The second PUT of one hash (an email change's fallback, say) finds the first's entry.
    h = subscriber_hash("ann@x.io")
    first = MemberPlan(
        h,
        (UpsertMember(h, "ann@x.io", {}, "subscribed"), UpdateTags(h, ("vip",), ())),
        None,
        (),
    )
    again = MemberPlan(h, (UpsertMember(h, "ann@x.io", {}, "subscribed"),), None, ())
    (entry,) = write_ahead_ledger([first, again], {})
    assert entry == replace(written_ahead_as_before(h, "ann@x.io"), maybe_tags=("vip",))
