"""The planner's fingerprints stay byte for byte what the ledgers already hold: `fields_hash`
(written out without a JSON encoder per call) and `clean_tags` (one casefold per tag) against
the plain formulas they replace, on any text."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from hypothesis import given
from hypothesis import strategies as st

from mcsync.mirror import TAG_NAME_LIMIT, clean_tags, fields_hash


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
