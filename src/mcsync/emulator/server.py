"""`mcsync emulator`: run the emulator as a standalone HTTP server (blocking)."""

from __future__ import annotations

import uvicorn

from .app import create_app

# The CLI server starts with one account so it is usable at once; tests start empty.
DEMO_TOKEN = "emulator-token"
DEMO_ACCOUNT = {
    "dc": "us1",
    "account_name": "Emulator Demo",
    "access_token": DEMO_TOKEN,
    "audiences": [{"id": "demo-list", "name": "Demo Audience"}],
}


def serve(host: str, port: int, per_call_ms: float = 0, per_member_ms: float = 0) -> None:
    app = create_app(
        per_call_ms=per_call_ms, per_member_ms=per_member_ms, seed_accounts=[DEMO_ACCOUNT]
    )
    print(
        f"Mailchimp emulator on http://{host}:{port}  (API http://{host}:{port}/3.0, "
        f"demo token {DEMO_TOKEN!r}, audience 'demo-list')",
        flush=True,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", lifespan="off")
