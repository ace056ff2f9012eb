"""The worker: LISTEN for the hint, claim due contacts per account, plan, apply, record."""

from mcsync.worker.runner import run_worker

__all__ = ["run_worker"]
