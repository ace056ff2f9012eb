"""The worker: LISTEN for the hint, claim due contacts per account, plan, apply, record.

runner.py   `Worker` (the loop over accounts) and `WorkerService` (its production parts)
account.py  serving one account: its concurrent passes, leases and heartbeat
apply.py    a pass's Mailchimp calls, member by member (`MemberApplier`, `apply_plans`)
batch.py    batch subscribe, and the payload checks made before anything is sent
gate.py     the account's gate: the in-flight cap and the flags that stop every call
outcomes.py what became of each member, and the table from it to its queue rows' fate (pure)
health.py   what they mean for the connection: throttle, pause, probe, error
store.py    every statement the worker runs (`WorkerStore`)
backoff.py  retry and throttle timing (`Backoff`)
types.py    the worker's data types (`Account`, `Event`, `Facts`, `MemberOutcome`, `Outcomes`)

What the ledger says before each call and after each answer is `mcsync.ledger` (pure).

The package imports nothing itself (start the worker with `mcsync.worker.runner.run_worker`),
so importing its pure modules (outcomes, types) brings in no database or HTTP client.
"""
