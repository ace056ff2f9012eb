"""`mcsync worker` with a switch the CLI does not have: NOTIFY off (polling only).

Run as `python -m benchmarks._worker [--no-listen]`; settings come from the environment, exactly
as for `mcsync worker`."""

from __future__ import annotations

import argparse
import asyncio

from mcsync.config import load_settings
from mcsync.logging import configure_logging
from mcsync.worker.runner import run_worker, tune_collector


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-listen", action="store_true", help="poll only, ignore NOTIFY")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args()
    configure_logging(args.log_level)
    tune_collector()  # as `mcsync worker` does
    asyncio.run(run_worker(load_settings(), listen=not args.no_listen))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
