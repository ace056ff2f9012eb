"""`mcsync web` logs one JSON object per line, like the worker: its own events and uvicorn's
(which it printed as plain text)."""

from __future__ import annotations

import json
from typing import Any

from benchmarks.processes import stop_process

from tests.e2e.web.conftest import APP_ORIGIN, CLIENT_ID, CLIENT_SECRET
from tests.support.browser import ARTIFACTS, free_port, web_env, web_process


def test_mcsync_web_logs_json_lines_uvicorns_included(db_url: str, emulator: Any) -> None:
    port = free_port()
    env = web_env(db_url, emulator, port, (CLIENT_ID, CLIENT_SECRET), MCSYNC_APP_ORIGIN=APP_ORIGIN)
    log_path = ARTIFACTS / "web-logs.log"
    with web_process(env, log_path, port) as proc:
        # uvicorn re-raises the SIGTERM it handled once shut down: -15 is a clean stop.
        assert stop_process(proc, grace=10) in (0, -15)
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    events = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"event", "level", "timestamp"} <= set(e) for e in events)
    said = [(e.get("logger"), e["event"]) for e in events]
    assert any(logger == "uvicorn.error" and "Uvicorn running" in ev for logger, ev in said)
    assert any(logger == "uvicorn.error" and "Shutting down" in ev for logger, ev in said)
