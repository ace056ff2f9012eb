"""The planner's fast paths answer exactly what the plain formulas they replace answered:
`fields_hash` (written out without a JSON encoder per call; ledgers hold its hashes),
`clean_tags` (one casefold per tag) and `desired_members` (a contact alone at its address is
not sorted), on any input."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from uuid import UUID

from hypothesis import given
from hypothesis import strategies as st

from mcsync.emails import normalize_email, subscriber_hash
from mcsync.mirror import (
    TAG_NAME_LIMIT,
    Contact,
    DesiredMember,
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
    assert clean_tags(tags) == tags_as_before(tags)  # type: ignore[arg-type]


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
