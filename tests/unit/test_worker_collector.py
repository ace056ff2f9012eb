"""`mcsync worker` sets up the garbage collector for a long-lived process (`tune_collector`):
its startup heap frozen out of the scans, the young generation collected every
`GC_YOUNG_THRESHOLD` allocations, and cyclic garbage still freed. Run in a process of its own,
as the worker is (the tests' own process keeps CPython's defaults)."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import gc, json, weakref
from mcsync.worker.runner import GC_YOUNG_THRESHOLD, tune_collector
tune_collector()
class Node: pass
a, b = Node(), Node()
a.other, b.other = b, a  # a cycle: only the collector frees it
gone = weakref.ref(a)
del a, b
gc.collect()
print(json.dumps({"threshold": gc.get_threshold()[0], "expected": GC_YOUNG_THRESHOLD,
                  "frozen": gc.get_freeze_count(), "cycle_freed": gone() is None}))
"""


def test_the_worker_process_collects_young_objects_less_often_and_still_frees_cycles() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    found = json.loads(out.stdout)
    assert found["threshold"] == found["expected"] > 700
    assert found["frozen"] > 1000  # the modules and schemas loaded at startup
    assert found["cycle_freed"]
