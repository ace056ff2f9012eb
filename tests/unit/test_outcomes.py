"""What happened to a member, and what it means for its queue rows (`mcsync.worker.outcomes`):
one vocabulary (`MemberStatus`), one table (`ROW_FATE`), read through `row_fate`. Pure."""

from __future__ import annotations

from typing import get_args

import pytest

from mcsync.mailchimp.errors import Disposition
from mcsync.worker.outcomes import ROW_FATE, SEVERITY, RowFate, row_fate
from mcsync.worker.types import MemberStatus, Outcomes


def test_one_vocabulary() -> None:
    """Every status has a place in the order and a row in the table; an error's disposition
    is one of them (the vocabulary is the dispositions plus "done" and "deferred")."""
    statuses = set(get_args(MemberStatus))
    assert set(SEVERITY) == statuses and len(SEVERITY) == len(statuses)
    assert set(ROW_FATE) == statuses
    assert set(get_args(Disposition)) == statuses - {"done", "deferred"}


def test_every_fate_is_a_list_the_store_writes() -> None:
    fates = {f for pair in ROW_FATE.values() for f in pair}
    assert fates == set(get_args(RowFate))
    assert fates <= set(Outcomes.__dataclass_fields__)


ROWS: list[tuple[list[MemberStatus], bool, RowFate]] = [
    # (the statuses of the members a row touches, was the account throttled, the row's fate)
    ([], False, "completed"),  # a row that touches no member (an unsyncable address)
    (["done"], False, "completed"),
    (["rejected"], False, "completed"),  # done, with its rejection recorded
    (["done", "rejected"], False, "completed"),
    (["postponed"], False, "postponed"),
    (["done", "postponed"], False, "postponed"),
    (["transient"], False, "retried"),
    (["postponed", "transient"], False, "retried"),
    (["throttled"], True, "deferred"),
    (["transient", "throttled"], True, "deferred"),
    (["deferred"], True, "deferred"),  # not tried: waits with the throttled account
    (["deferred"], False, "released"),  # not tried: the account stopped (paused, lease lost)
    (["done", "deferred"], False, "released"),
    (["connection"], False, "released"),
    (["connection"], True, "released"),
    (["throttled", "connection"], True, "released"),
    (["deferred", "connection"], True, "released"),
]


@pytest.mark.parametrize(("statuses", "throttled", "fate"), ROWS)
def test_row_fate(statuses: list[MemberStatus], throttled: bool, fate: RowFate) -> None:
    assert row_fate(statuses, throttled=throttled) == fate
    assert row_fate(reversed(statuses), throttled=throttled) == fate  # order is irrelevant
