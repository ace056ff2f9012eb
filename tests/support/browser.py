"""Helpers for the tests that drive the widget (and the demo page) in headless Chromium.

Chromium is Debian's (`apt-get install chromium`; .ci/run installs it); axe-core is the copy the
`axe-playwright-python` package ships. A module that needs them calls `require_chromium()` first,
which skips it loudly when Chromium is missing."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from benchmarks.processes import stop_process

from tests.support.harness import ENCRYPTION_KEY
from tests.support.roles import web_url
from tests.support.tokens import TokenIssuer, default_issuer, new_key

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str | None:
    candidates = (os.environ.get("MCSYNC_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium")
    return next((p for p in candidates if p and Path(p).exists()), None)


def require_chromium() -> str:
    """The Chromium binary, or a loud module-level skip."""
    path = chromium_path()
    if path is None:
        pytest.skip(
            "SKIPPED LOUDLY: the browser tests need Debian's chromium "
            "(apt-get install chromium; .ci/run installs it)",
            allow_module_level=True,
        )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def app_user_token(user_id: uuid.UUID, *, ttl: int = 3600) -> str:
    """A Supabase access token for a signed-in user, ES256 from the tests' JWKS
    (tests/support/tokens.py: the one place tests mint user tokens)."""
    return default_issuer().token(user_id, ttl=ttl)


def forged_user_token(user_id: uuid.UUID) -> str:
    """The same claims signed by a key the JWKS does not publish (a refused token)."""
    issuer = default_issuer()
    return new_key().sign(issuer.claims(user_id, ttl=3600), kid=issuer.current.kid)


class _Page(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        return None


@contextmanager
def host_page() -> Iterator[tuple[str, type[_Page]]]:
    """A tiny app on its own origin: set `handler.body` to the HTML it serves."""
    handler = type("HostPage", (_Page,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()


def web_env(
    db_url: str,
    emulator: Any,
    port: int,
    client: tuple[str, str],
    *,
    tokens: TokenIssuer | None = None,
    **extra: str,
) -> dict[str, str]:
    """`mcsync web`'s environment as production sets it: its own login, the emulator for
    Mailchimp, the app's OAuth client `client` (id, secret) redirecting to this port, users
    verified by the JWKS of `tokens` (the shared test issuer by default) and no JWT secret;
    `extra` adds or replaces variables."""
    issuer = tokens or default_issuer()
    return {
        "DATABASE_URL": web_url(db_url),
        "MCSYNC_ENCRYPTION_KEYS": ENCRYPTION_KEY,
        "MAILCHIMP_API_URL": emulator.api_url,
        "MAILCHIMP_LOGIN_URL": emulator.login_url,
        "MAILCHIMP_CLIENT_ID": client[0],
        "MAILCHIMP_CLIENT_SECRET": client[1],
        "MAILCHIMP_REDIRECT_URI": f"http://127.0.0.1:{port}/oauth/callback",
        "MCSYNC_JWKS_URL": issuer.jwks_url,
        "MCSYNC_JWT_ISSUER": issuer.issuer_url,
        **extra,
    }


@contextmanager
def web_process(
    env: dict[str, str], log_path: Path, port: int, *, cli_args: Sequence[str] = ()
) -> Iterator[subprocess.Popen[bytes]]:
    """`mcsync [CLI_ARGS] web --port PORT` as a subprocess, configured by `env` over this
    process's environment as in production, its output in `log_path`; yielded once `/healthz`
    answers, stopped (SIGTERM, then SIGKILL) on the way out unless the caller stopped it."""
    url = f"http://127.0.0.1:{port}"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mcsync.cli", *cli_args, "web", "--port", str(port)],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("mcsync web did not start:\n" + log_path.read_text())
                time.sleep(0.1)
            yield proc
        finally:
            if proc.poll() is None:
                stop_process(proc, grace=10)


@contextmanager
def mcsync_web(env: dict[str, str], log_name: str) -> Iterator[str]:
    """`web_process` on MCSYNC_WEB_PORT's port (chosen by the caller, who needs it for the
    redirect URI: pass the rest), logging to test-artifacts/browser/; yields its URL."""
    port = int(env.pop("MCSYNC_WEB_PORT"))
    with web_process(env, ARTIFACTS / log_name, port):
        yield f"http://127.0.0.1:{port}"


def axe_violations(page: Any) -> list[str]:
    """axe-core's violations on `page` (open shadow roots included), one line each."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [
        f"{v['id']}: {v['help']} ({len(v['nodes'])} nodes)"
        for v in results.response.get("violations", [])
    ]


def focused(page: Any) -> str:
    """What has the keyboard focus, looking into open shadow roots: `tag.class` or `tag#id`,
    with its accessible label or text; "BODY" when focus fell to the page."""
    return str(
        page.evaluate(
            """() => {
              let el = document.activeElement;
              while (el && el.shadowRoot && el.shadowRoot.activeElement) {
                el = el.shadowRoot.activeElement;
              }
              if (!el || el === document.body) return "BODY";
              const label = el.getAttribute("aria-label") || el.textContent.trim().slice(0, 40);
              return `${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}: ${label}`;
            }"""
        )
    )


def tab_to(page: Any, wanted: str, *, limit: int = 40) -> None:
    """Press Tab until the focused element's description (see `focused`) contains `wanted`."""
    seen = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        now = focused(page)
        if wanted in now:
            return
        seen.append(now)
    raise AssertionError(f"Tab never reached {wanted!r}; it went through {seen}")


def contrast_ratio(rgb_a: tuple[int, int, int], rgb_b: tuple[int, int, int]) -> float:
    """WCAG 2 contrast ratio of two sRGB colours."""

    def luminance(rgb: tuple[int, int, int]) -> float:
        def channel(c: int) -> float:
            s = c / 255
            return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4

        r, g, b = (channel(c) for c in rgb)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    hi, lo = sorted((luminance(rgb_a), luminance(rgb_b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)
