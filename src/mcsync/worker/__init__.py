"""The worker: LISTEN for the hint, claim due contacts per account, plan, apply, record.

runner.py   `Worker` (the loop over accounts) and `WorkerService` (its production parts)
account.py  serving one account: its concurrent passes, leases and heartbeat
apply.py    a pass's Mailchimp calls (`MemberApplier`, batch subscribe, the account's gate)
outcomes.py what the calls' outcomes mean for the queue rows (pure)
health.py   what they mean for the connection: throttle, pause, probe, error
store.py    every statement the worker runs (`WorkerStore`)
backoff.py  retry and throttle timing (`Backoff`)
"""

from mcsync.worker.runner import run_worker

__all__ = ["run_worker"]
