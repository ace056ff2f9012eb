"""Typed arrays for the worker's statements, dumped to PostgreSQL's binary array format at once.

A pass sends some forty arrays of up to a few hundred keys each (ids, hashes, a ledger's
columns). psycopg dumps a plain `list` element by element in Python (a sub-dumper call, a
length packed and two appends per element): about a tenth of the worker's CPU per contact in
an import. These lists say what they hold, so their dumpers build the whole array from C-level
`map`/`join` calls, with no Python code run per element. The bytes are the ones PostgreSQL's
`array_recv` reads (and psycopg's own binary dumper writes): a header (dimensions, a null flag,
the element type), the one dimension's length and lower bound 1, then each element as its
length and bytes (-1 and nothing for NULL). They are plain lists otherwise (the in-memory model
reads them as such), and only for `%(name)b` placeholders: each statement casts them anyway.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from itertools import chain, repeat
from operator import attrgetter
from typing import Any
from uuid import UUID

import psycopg
from psycopg.abc import AdaptContext
from psycopg.adapt import Dumper
from psycopg.pq import Format

__all__ = ["BoolArray", "Int4Array", "Int8Array", "TextArray", "UuidArray"]

_HEAD = struct.Struct("!iiIii")  # ndim, has null, element oid, length, lower bound
_EMPTY = struct.Struct("!iiI")  # an empty array: no dimension at all
_pack_len = struct.Struct("!i").pack
_NULL = _pack_len(-1)
_LEN16 = _pack_len(16)
_uuid_int = attrgetter("int")

# Element and array type oids (fixed in PostgreSQL's catalog, pg_type.dat).
_BOOL, _BOOL_ARRAY = 16, 1000
_INT4, _INT4_ARRAY = 23, 1007
_INT8, _INT8_ARRAY = 20, 1016
_TEXT, _TEXT_ARRAY = 25, 1009
_UUID, _UUID_ARRAY = 2950, 2951


class UuidArray(list[UUID]):
    """A `uuid[]` (no NULLs)."""


class TextArray(list[str | None]):
    """A `text[]`, NULLs allowed."""


class Int4Array(list[int]):
    """An `int4[]` (no NULLs)."""


class Int8Array(list[int]):
    """An `int8[]` (no NULLs)."""


class BoolArray(list[bool | None]):
    """A `bool[]`, NULLs allowed."""


def _array(oid: int, n: int, has_null: bool, elements: Iterable[bytes]) -> bytes:
    if not n:
        return _EMPTY.pack(0, 0, oid)
    return b"".join(chain((_HEAD.pack(1, int(has_null), oid, n, 1),), elements))


class _ArrayDumper(Dumper):
    format = Format.BINARY


class UuidArrayDumper(_ArrayDumper):
    oid = _UUID_ARRAY

    def dump(self, obj: UuidArray) -> bytes:
        # Each element: its length (16) and its 16 bytes (big-endian, as `UUID.bytes`, without
        # the property's Python call); the lengths are the separator of one join.
        if not obj:
            return _array(_UUID, 0, False, ())
        body = _LEN16.join(map(int.to_bytes, map(_uuid_int, obj), repeat(16)))
        return _array(_UUID, len(obj), False, (_LEN16, body))


class TextArrayDumper(_ArrayDumper):
    oid = _TEXT_ARRAY

    def __init__(self, cls: type, context: AdaptContext | None = None) -> None:
        super().__init__(cls, context)
        # The connection's encoding, as psycopg's own text dumper uses it.
        self._encoding = self.connection.info.encoding if self.connection else "utf-8"

    def dump(self, obj: TextArray) -> bytes:
        if None in obj:
            enc = self._encoding
            parts: list[bytes] = []
            for s in obj:
                if s is None:
                    parts.append(_NULL)
                else:
                    b = s.encode(enc)
                    parts += (_pack_len(len(b)), b)
            return _array(_TEXT, len(obj), True, parts)
        encoded = list(map(str.encode, obj, repeat(self._encoding)))  # type: ignore[arg-type]
        lengths = set(map(len, encoded))
        if len(lengths) == 1:
            # All of one length (hashes: 32 hex digits): the length is the join's separator.
            sep = _pack_len(lengths.pop())
            return _array(_TEXT, len(obj), False, (sep, sep.join(encoded)))
        return _array(_TEXT, len(obj), False, [_pack_len(len(b)) + b for b in encoded])


class Int4ArrayDumper(_ArrayDumper):
    oid = _INT4_ARRAY

    def dump(self, obj: Int4Array) -> bytes:
        n = len(obj)
        body = struct.pack(f"!{2 * n}i", *chain.from_iterable(zip(repeat(4), obj)))
        return _array(_INT4, n, False, (body,))


class Int8ArrayDumper(_ArrayDumper):
    oid = _INT8_ARRAY

    def dump(self, obj: Int8Array) -> bytes:
        n = len(obj)
        body = struct.pack("!" + "iq" * n, *chain.from_iterable(zip(repeat(8), obj)))
        return _array(_INT8, n, False, (body,))


_BOOL_ELEMENT: dict[Any, bytes] = {
    True: _pack_len(1) + b"\x01",
    False: _pack_len(1) + b"\x00",
    None: _NULL,
}


class BoolArrayDumper(_ArrayDumper):
    oid = _BOOL_ARRAY

    def dump(self, obj: BoolArray) -> bytes:
        return _array(_BOOL, len(obj), None in obj, map(_BOOL_ELEMENT.__getitem__, obj))


for _cls, _dumper in (
    (UuidArray, UuidArrayDumper),
    (TextArray, TextArrayDumper),
    (Int4Array, Int4ArrayDumper),
    (Int8Array, Int8ArrayDumper),
    (BoolArray, BoolArrayDumper),
):
    psycopg.adapters.register_dumper(_cls, _dumper)
