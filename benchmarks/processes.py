"""Stopping the `mcsync` processes the benchmarks and the tests start (workers, the web side)."""

from __future__ import annotations

import signal
import subprocess
from typing import Any


def stop_process(proc: subprocess.Popen[Any], grace: float) -> int:
    """Stop `proc` as an operator would: SIGTERM, so it finishes what is in flight, and SIGKILL
    if it is still running after `grace` seconds. Returns its exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode
