"""Run the emulator in-process on a background thread, for tests and benchmarks."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn

from .admin_client import EmulatorAdmin
from .app import create_app


@dataclass
class EmulatorHandle:
    url: str
    admin: EmulatorAdmin

    @property
    def api_url(self) -> str:
        return self.url + "/3.0"  # the API ignores the dc; the token identifies the account

    @property
    def login_url(self) -> str:
        return self.url  # OAuth lives at /oauth2/...


class _Server(uvicorn.Server):
    async def main_loop(self) -> None:
        # uvicorn polls should_exit every 100 ms; poll faster so per-test teardown is quick.
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864_000
            await asyncio.sleep(0.01)


@contextmanager
def running_emulator(
    per_call_ms: float = 0, per_member_ms: float = 0, port: int = 0
) -> Iterator[EmulatorHandle]:
    """Start uvicorn on 127.0.0.1 (port 0 = a free one), yield a handle, stop on exit."""
    app = create_app(per_call_ms=per_call_ms, per_member_ms=per_member_ms)
    # Bind the socket ourselves so port 0 gives us the real port before uvicorn starts.
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY when sock.proto says TCP, and
    # without it every response waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = _Server(
        uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="mailchimp-emulator"
    )
    thread.start()
    admin = EmulatorAdmin(url)
    try:
        _wait_until_up(admin, thread)
        yield EmulatorHandle(url=url, admin=admin)
    finally:
        admin.close()
        server.should_exit = True
        server.force_exit = True  # don't wait for keep-alive clients or held (faulted) requests
        thread.join(timeout=10)
        sock.close()


def _wait_until_up(admin: EmulatorAdmin, thread: threading.Thread, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise RuntimeError("the emulator thread died while starting")
        if admin.is_up():
            return
        time.sleep(0.01)
    raise RuntimeError(f"the emulator at {admin.base_url} did not start within {timeout}s")
