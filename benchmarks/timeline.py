"""Where a worker's wall time goes, read from its own JSON log lines.

Every account pass logs `batch_done` (with its duration) and every Mailchimp call logs
`mailchimp_call` (with its duration), so from the log alone we can tell how much of the wall
time was spent waiting on Mailchimp, how much in the worker's own pass work (loading facts,
planning, recording), how much between passes (claiming), and how many calls were in flight on
average."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


@dataclass(frozen=True)
class Timeline:
    passes: int
    calls: int
    wall_s: float
    pass_s: float  # sum of pass durations
    call_s: float  # sum of call durations (overlapping calls add up)
    mean_pass_ms: float
    mean_call_ms: float
    mean_events_per_pass: float
    mean_in_flight: float  # call_s / wall_s

    def describe(self) -> str:
        between = max(0.0, self.wall_s - self.pass_s)
        return (
            f"{self.passes} passes of {self.mean_events_per_pass:.0f} events over "
            f"{self.wall_s:.1f} s: mean pass {self.mean_pass_ms:.0f} ms, mean Mailchimp call "
            f"{self.mean_call_ms:.0f} ms, {self.calls} calls with {self.mean_in_flight:.2f} "
            f"in flight on average (10 allowed); {between:.1f} s of the wall time was between "
            "passes (claiming)"
        )


def _ts(line: dict[str, object]) -> float:
    return datetime.fromisoformat(str(line["timestamp"]).replace("Z", "+00:00")).timestamp()


def _num(line: dict[str, object], key: str) -> float:
    value = line.get(key)
    return float(value) if isinstance(value, int | float | str) else 0.0


def read_timeline(log_path: Path) -> Timeline | None:
    passes: list[dict[str, object]] = []
    calls: list[dict[str, object]] = []
    for raw in log_path.read_text(errors="replace").splitlines():
        if not raw.startswith("{"):
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if line.get("event") == "batch_done":
            passes.append(line)
        elif line.get("event") == "mailchimp_call":
            calls.append(line)
    if not passes:
        return None
    first_start = _ts(passes[0]) - _num(passes[0], "duration_ms") / 1000
    wall = max(_ts(passes[-1]) - first_start, 1e-9)
    pass_s = sum(_num(p, "duration_ms") for p in passes) / 1000
    call_s = sum(_num(c, "duration_ms") for c in calls) / 1000
    events = sum(_num(p, "events") for p in passes)
    return Timeline(
        passes=len(passes),
        calls=len(calls),
        wall_s=wall,
        pass_s=pass_s,
        call_s=call_s,
        mean_pass_ms=pass_s * 1000 / len(passes),
        mean_call_ms=call_s * 1000 / len(calls) if calls else 0.0,
        mean_events_per_pass=events / len(passes),
        mean_in_flight=call_s / wall,
    )
