"""The typed arrays' dumpers (mcsync.arrays) write what PostgreSQL's binary array format holds:
psycopg's own binary loader reads back every list as it was given, and where psycopg's own
dumper picks the same element type (uuid, text, bool) the bytes are the very ones it writes.
Against PostgreSQL itself: every worker statement's test (tests/integration, tests/e2e)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from hypothesis import given
from hypothesis import strategies as st
from psycopg.adapt import PyFormat, Transformer
from psycopg.pq import Format

from mcsync.arrays import BoolArray, Int4Array, Int8Array, TextArray, UuidArray

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
