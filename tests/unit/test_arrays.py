"""The typed arrays' dumpers (mcsync.arrays) write what PostgreSQL's binary array format holds:
psycopg's own binary loader reads back every list as it was given, and where psycopg's own
dumper picks the same element type (uuid, text, bool) the bytes are the very ones it writes.
Against PostgreSQL itself: every worker statement's test (tests/integration, tests/e2e). And
the worker's `jsonb` loader (`rows.load_json`) answers as `json.loads`."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg.adapt import PyFormat, Transformer
from psycopg.pq import Format

from mcsync.arrays import BoolArray, Int4Array, Int8Array, TextArray, UuidArray
from mcsync.rows import load_json

_tx = Transformer()
# Any text PostgreSQL can hold (no NUL), of one length or of many.
_texts = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)))
_hex = st.binary(min_size=16, max_size=16).map(bytes.hex)


def _dumped(value: list[Any]) -> bytes:
    return bytes(_tx.get_dumper(value, PyFormat.BINARY).dump(value) or b"")


def _loaded(oid: int, data: bytes) -> Any:
    return _tx.get_loader(oid, Format.BINARY).load(data)


@given(st.lists(st.uuids(), max_size=40))
def test_a_uuid_array_is_psycopgs_own(ids: list[UUID]) -> None:
    if ids:
        assert _dumped(UuidArray(ids)) == _dumped(ids)
    assert _loaded(2951, _dumped(UuidArray(ids))) == ids


@given(st.lists(st.one_of(_texts, st.none()), max_size=40) | st.lists(_hex, max_size=40))
def test_a_text_array_is_psycopgs_own(texts: list[str | None]) -> None:
    if any(t is not None for t in texts):
        assert _dumped(TextArray(texts)) == _dumped(texts)
    assert _loaded(1009, _dumped(TextArray(texts))) == texts


@given(st.lists(st.booleans() | st.none(), max_size=40))
def test_a_bool_array_is_psycopgs_own(flags: list[bool | None]) -> None:
    if any(f is not None for f in flags):
        assert _dumped(BoolArray(flags)) == _dumped(flags)
    assert _loaded(1000, _dumped(BoolArray(flags))) == flags


@given(st.lists(st.integers(-(2**31), 2**31 - 1), max_size=40))
def test_an_int4_array_reads_back(numbers: list[int]) -> None:
    assert _loaded(1007, _dumped(Int4Array(numbers))) == numbers


@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=40))
def test_an_int8_array_reads_back(numbers: list[int]) -> None:
    assert _loaded(1016, _dumped(Int8Array(numbers))) == numbers


def test_an_empty_array_is_empty() -> None:
    for value, oid in ((UuidArray(), 2951), (TextArray(), 1009), (Int4Array(), 1007)):
        assert _loaded(oid, _dumped(value)) == []


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_texts, inner, max_size=4),
    max_leaves=12,
)


@given(_json_values, st.sampled_from(["", " ", "\n"]), st.sampled_from(["", " "]))
def test_the_json_loader_answers_as_json_loads(value: Any, before: str, after: str) -> None:
    """`rows.load_json` (the worker's `jsonb` loader) on any JSON text, with whitespace around
    it or not, as bytes or text: `json.loads`' answer."""
    text = before + json.dumps(value, ensure_ascii=False) + after
    assert load_json(text.encode()) == json.loads(text.encode()) == load_json(text)


def test_the_json_loader_fails_as_json_loads() -> None:
    for bad in (b"", b"{", b"[1] 2", b"\xff"):
        with pytest.raises(ValueError):
            json.loads(bad)
        with pytest.raises(ValueError):
            load_json(bad)
