"""The benchmarks' CPU accounting (benchmarks/cpu.py) on real processes: a process tree's CPU
includes children that started and exited between two snapshots, as Postgres backends do."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from benchmarks.cpu import CpuMeter, tree_cpu_seconds

# A parent that, on each line on stdin, runs a child burning ~0.3 s of CPU and waits for it
# (reaping it, so the child's CPU moves to the parent's cutime, as with the postmaster).
PARENT = textwrap.dedent(
    """
    import subprocess, sys
    BURN = "import time\\nend = time.process_time() + 0.3\\nwhile time.process_time() < end: pass"
    for line in sys.stdin:
        subprocess.run([sys.executable, "-c", BURN], check=True)
        print("done", flush=True)
    """
)


def test_cpu_of_children_that_exited_between_snapshots_is_counted() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdin is not None and parent.stdout is not None
    try:
        meter = CpuMeter({"tree": parent.pid})
        before = meter.snapshot()
        for _ in range(2):
            parent.stdin.write("go\n")
            parent.stdin.flush()
            assert parent.stdout.readline().strip() == "done"
        spent = meter.snapshot().since(before)["tree"]
        # Two children of >= 0.3 s CPU each (plus their interpreter start), both gone by now.
        assert spent >= 0.55, spent
        assert tree_cpu_seconds(parent.pid) >= spent
    finally:
        parent.stdin.close()
        parent.wait(10)


def test_a_process_that_does_not_exist_counts_nothing() -> None:
    beyond_pid_max = 2**22 + 12345  # Linux's pid_max is at most 2**22
    assert CpuMeter({"gone": beyond_pid_max}).snapshot().seconds["gone"] == 0.0
