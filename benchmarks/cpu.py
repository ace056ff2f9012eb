"""CPU seconds of whole process trees, read from /proc, for "CPU per contact" figures.

A process tree's CPU is the utime + stime of every live process in it plus the cutime + cstime
(CPU of children that exited and were reaped) of each. Postgres starts and ends backends all the
time; a backend that exits between two snapshots was counted live (partially) in the first and,
once the postmaster reaped it, whole in the postmaster's cutime/cstime in the second, so the
difference of two snapshots is the CPU spent in between, nothing lost and nothing counted twice.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    return raw[raw.rindex(")") + 2 :].split()


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids, for every process on the machine (one pass over /proc)."""
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is None:
            continue
        tree.setdefault(int(fields[1]), []).append(int(entry.name))  # fields[1] is ppid
    return tree


def tree_cpu_seconds(root: int, tree: dict[int, list[int]] | None = None) -> float:
    """CPU seconds of `root` and all its descendants, live and reaped."""
    tree = tree if tree is not None else _children()
    total_ticks = 0
    stack = [root]
    while stack:
        pid = stack.pop()
        fields = _stat_fields(pid)
        if fields is None:
            continue
        # After "(comm) ": state ppid ... utime(12) stime(13) cutime(14) cstime(15), 0-based
        total_ticks += sum(int(fields[i]) for i in (11, 12, 13, 14))
        stack.extend(tree.get(pid, ()))
    return total_ticks / CLOCK_TICKS


def postmaster_pid(data_dir: Path) -> int:
    """The embedded server's postmaster, from the first line of its postmaster.pid."""
    return int((data_dir / "postmaster.pid").read_text().split()[0])


@dataclass(frozen=True)
class CpuSnapshot:
    seconds: Mapping[str, float]  # process label -> CPU seconds so far

    def since(self, earlier: CpuSnapshot) -> dict[str, float]:
        return {k: v - earlier.seconds.get(k, 0.0) for k, v in self.seconds.items()}


class CpuMeter:
    """Snapshots the CPU of labelled process trees: worker(s), postgres, emulator."""

    def __init__(self, roots: Mapping[str, int | list[int]]) -> None:
        self.roots = {k: [v] if isinstance(v, int) else list(v) for k, v in roots.items()}

    def snapshot(self) -> CpuSnapshot:
        tree = _children()
        return CpuSnapshot(
            {k: sum(tree_cpu_seconds(p, tree) for p in pids) for k, pids in self.roots.items()}
        )


def ms_per_contact(cpu_s: Mapping[str, float], contacts: int) -> dict[str, float]:
    """CPU milliseconds per contact, per process label."""
    return {k: (v * 1000 / contacts if contacts else 0.0) for k, v in cpu_s.items()}
