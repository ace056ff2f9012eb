"""The emulator in its own process, so the benchmarks can read its CPU apart from the rest.

Run as `python -m benchmarks._emulator PER_CALL_MS PER_MEMBER_MS`: prints its base URL on the
first line of stdout, serves until stdin closes (the parent went away or is done)."""

from __future__ import annotations

import sys

from mcsync.emulator.testing import running_emulator
from mcsync.worker.runner import tune_collector


def main() -> int:
    per_call_ms, per_member_ms = (float(a) for a in sys.argv[1:3])
    # Collected like the worker it serves (its audience lives as long as the process): its CPU
    # stands in for Mailchimp's, so the benchmark leaves out what collecting would add.
    tune_collector()
    with running_emulator(per_call_ms=per_call_ms, per_member_ms=per_member_ms) as emu:
        print(emu.url, flush=True)
        sys.stdin.read()  # blocks until the parent closes our stdin
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
