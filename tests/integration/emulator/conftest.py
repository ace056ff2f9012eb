"""Fixtures for emulator tests: an account with a plain and a strict audience, and an API client.

Everything goes over real HTTP with plain httpx; mcsync's own client is deliberately not used.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mcsync.emulator.testing import EmulatorHandle

TOKEN = "tok-main"
PLAIN = "plain"  # default merge fields, nothing required
STRICT = "strict"  # LNAME required, US phone format, double opt-in


def md5(email: str) -> str:
    return hashlib.md5(email.lower().encode()).hexdigest()


@pytest.fixture
def emu(emulator: EmulatorHandle) -> EmulatorHandle:
    emulator.admin.create_account(
        dc="us7", account_name="Acme", access_token=TOKEN,
        audiences=[{"id": PLAIN, "name": "Plain"},
                   {"id": STRICT, "name": "Strict", "double_optin": True,
                    "phone_format": "US", "required_fields": ["LNAME"]}])
    return emulator


@pytest.fixture
def api(emu: EmulatorHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.api_url, headers={"Authorization": f"Bearer {TOKEN}"},
                      timeout=30) as client:
        yield client


def put(api: httpx.Client, email: str, list_id: str = PLAIN, **body: Any) -> httpx.Response:
    body.setdefault("email_address", email)
    if "status" not in body:
        body.setdefault("status_if_new", "subscribed")
    return api.put(f"/lists/{list_id}/members/{md5(email)}", json=body)


# Real Mailchimp leaves `type` out of these error bodies (evidence: emulator/refusals.py).
UNTYPED_TITLES = frozenset(
    {"Member Exists", "Forgotten Email Not Subscribed", "Member In Compliance State"}
)


def problem(response: httpx.Response) -> dict[str, Any]:
    """Check the Mailchimp error envelope and return the body."""
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["x-request-id"]
    body: dict[str, Any] = response.json()
    assert set(body) >= {"title", "status", "detail", "instance"}
    assert ("type" in body) == (body["title"] not in UNTYPED_TITLES)
    assert body["status"] == response.status_code
    return body
