"""The web side's one "try again in about N minutes" answer (a 429), for Sync Now's hourly
limit and the audience-change limit alike."""

from __future__ import annotations

import json

import pytest

from mcsync.web.routes import _try_again_later


@pytest.mark.parametrize(
    ("wait", "spelled"),
    [(1, "about 1 minute."), (60, "about 1 minute."), (61, "about 2 minutes."),
     (3599, "about 60 minutes.")],
)  # fmt: skip
def test_minutes_are_rounded_up_and_spelled(wait: int, spelled: str) -> None:
    answer = _try_again_later("You can run it again in about {minutes}.", wait)
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == str(wait)
    body = json.loads(answer.body)
    assert body == {"detail": f"You can run it again in {spelled}", "retry_after": wait}
