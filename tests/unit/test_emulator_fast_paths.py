"""The emulator's fast paths answer exactly what the plain code they replace answered: a time
written to the second (`state.iso_of`, each second written once), a value's JSON type read
from its exact type (`described.json_type`), the description's checks (`described.violations`,
a value's type read once, no list built for a valid leaf) and the `fields` / `exclude_fields`
projection (`views.project`, the paths grouped once for a whole list) and a text merge value
(`validation._normalize`, short ASCII text not encoded to be cut)."""

from __future__ import annotations

import enum
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcsync.emulator import described
from mcsync.emulator.described import BODIES, Prop, json_type, violations
from mcsync.emulator.state import MergeField, iso_of
from mcsync.emulator.validation import _normalize
from mcsync.emulator.views import _project


def iso_as_before(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).replace(microsecond=0).isoformat()


@pytest.mark.parametrize(
    "ts",
    [0.0, 0.5, 1.0, 1.9999994, 1.9999995, 1.9999996, 1.999999, 1.9999989, 1764990000.0,
     1764990000.9999999, 1764990000.999999, 1764990000.4, -1.5, -0.0000001],
)
def test_iso_of_is_the_former_formula(ts: float) -> None:
    assert iso_of(ts) == iso_as_before(ts)


@given(st.floats(min_value=-1e9, max_value=4e9, allow_nan=False))
def test_iso_of_any_time_is_the_former_formula(ts: float) -> None:
    assert iso_of(ts) == iso_as_before(ts)


def json_type_as_before(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


class Flag(enum.IntEnum):
    ON = 1


class Text(str):
    pass


@pytest.mark.parametrize(
    "value",
    [None, True, False, 0, 3, 2.5, "", "x", [], [1], {}, {"a": 1}, Flag.ON, Text("t"), (1,),
     {1}, object(), b"x"],
)
def test_json_type_is_the_former_rule(value: Any) -> None:
    assert json_type(value) == json_type_as_before(value)


def violations_as_before(
    prop: Prop, value: Any, path: str = "", *, waive_required: bool = False
) -> list[dict[str, str]]:
    def is_(kind: str) -> bool:
        found = json_type_as_before(value)
        return found == kind or (kind == "number" and found == "integer")

    if value is None:
        return [] if prop.nullable else [described._null(path, prop)]
    if not any(is_(kind) for kind in prop.kinds):
        if len(prop.kinds) > 1:
            return [{"field": path, "message": described.ANY_OF}]
        found = json_type_as_before(value)
        message = f"Schema describes {prop.kinds[0]}, {found} found instead"
        return [{"field": path, "message": message}]
    if prop.enum and value not in prop.enum:
        return [{"field": path, "message": described.NOT_ACCEPTED + ", ".join(prop.enum)}]
    if prop.timestamp and not any(p.match(value) for p in described._TIMESTAMP_FORMS):
        return [{"field": path, "message": described.ANY_OF}]
    out: list[dict[str, str]] = []
    if isinstance(value, list) and prop.items is not None:
        for i, item in enumerate(value):
            out += violations_as_before(prop.items, item, described._at(path, f"item:{i}"))
    if isinstance(value, dict) and prop.kinds == ("object",):
        for name, item in value.items():
            sub = prop.props.get(name, prop.values)
            if sub is not None:
                out += violations_as_before(sub, item, described._at(path, name))
        if prop.required and not waive_required:
            out += described._required(prop, value, path, out)
    return out


leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.sampled_from(["", "a@b.io", "subscribed", "pending", "bogus", "html", "2026-12-06T04:10Z"]),
)
values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(
        st.sampled_from(
            ["email_address", "status", "status_if_new", "merge_fields", "tags", "FNAME",
             "email_type", "timestamp_signup", "vip", "language", "members", "update_existing",
             "interests", "location", "latitude", "other"]
        ),
        inner,
        max_size=5,
    ),
    max_leaves=12,
)


@given(st.sampled_from(sorted(BODIES)), values, st.booleans())
def test_violations_are_the_former_rule(op: str, body: Any, waive: bool) -> None:
    prop = BODIES[op]
    assert violations(prop, body, waive_required=waive) == violations_as_before(
        prop, body, waive_required=waive
    )


def test_a_batch_body_is_checked_as_before() -> None:
    member = {"email_address": "a@b.io", "status_if_new": "subscribed",
              "merge_fields": {"FNAME": "A", "PHONE": ""}, "tags": ["lead", "vip"]}
    bad = {**member, "status_if_new": "bogus", "tags": [1], "merge_fields": None}
    for body in ({"members": [member] * 3, "update_existing": True},
                 {"members": [member, bad, {}], "update_existing": "yes"}):
        prop = BODIES["batch_subscribe"]
        assert violations(prop, body) == violations_as_before(prop, body)


def project_as_before(node: Any, paths: list[list[str]], *, keep: bool) -> Any:
    if isinstance(node, list):
        return [project_as_before(item, paths, keep=keep) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        subs = [p[1:] for p in paths if p[0] == key]
        if not subs:
            if not keep:
                out[key] = value
        elif any(not s for s in subs):
            if keep:
                out[key] = value
        else:
            out[key] = project_as_before(value, subs, keep=keep)
    return out


ANSWER = {
    "new_members": [
        {"id": "1", "email_address": "a@b.io", "status": "subscribed",
         "merge_fields": {"FNAME": "A"}, "tags": [{"id": 1, "name": "x"}], "stats": {"a": 0}},
        {"id": "2", "email_address": "b@b.io", "status": "pending", "merge_fields": {},
         "tags": [], "stats": {"a": 1}},
    ],
    "updated_members": [],
    "errors": [{"email_address": "c@b.io", "error": "fake"}],
    "total_created": 2,
}


@pytest.mark.parametrize(
    "spec",
    ["new_members.id,new_members.email_address,new_members.status,errors,total_created",
     "new_members", "new_members.merge_fields.FNAME,new_members.tags.name", "errors.error",
     "new_members.id,new_members,total_created", "total_created,total_created", ""],
)
@pytest.mark.parametrize("keep", [True, False])
def test_projection_is_the_former_rule(spec: str, keep: bool) -> None:
    paths = [p.split(".") for p in spec.split(",") if p]
    # Compared as JSON text: the keys' order is part of the answer.
    got = json.dumps(_project(ANSWER, paths, keep=keep))
    assert got == json.dumps(project_as_before(ANSWER, paths, keep=keep))


@given(st.text() | st.text(min_size=200, max_size=300) | st.text(alphabet="é𝄞ab", min_size=60))
def test_a_text_merge_value_is_cut_as_before(text: str) -> None:
    field = MergeField(tag="FNAME", type="text", name="First Name")
    expected = ("", None) if text == "" else (text.encode()[:255].decode(errors="ignore"), None)
    assert _normalize(field, text, "US") == expected
