"""The 10-connection cap, the latency model, and injected faults."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from mcsync.emulator.testing import EmulatorHandle

from .conftest import PLAIN, TOKEN, problem

AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def _burst(url: str, n: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=n + 5)
    async with httpx.AsyncClient(headers=AUTH, limits=limits, timeout=30) as client:
        return await asyncio.gather(*(client.get(url) for _ in range(n)))


def test_ten_in_flight_served_eleventh_refused(emu: EmulatorHandle) -> None:
    emu.admin.set_latency(per_call_ms=1000)
    responses = asyncio.run(_burst(emu.api_url + "/ping", 11))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 10 + [429]
    emu.admin.set_latency(0, 0)
    assert httpx.get(emu.api_url + "/ping", headers=AUTH).status_code == 200  # slots released


def test_some_429s_have_no_body(emu: EmulatorHandle) -> None:
    emu.admin.set_latency(per_call_ms=1000)
    refused = [r for r in asyncio.run(_burst(emu.api_url + "/ping", 12)) if r.status_code == 429]
    assert len(refused) == 2
    bodies = sorted(len(r.content) for r in refused)
    assert bodies[0] == 0 and bodies[1] > 0
    with_body = next(r for r in refused if r.content)
    assert problem(with_body)["title"] == "Too Many Requests"


def test_limit_is_per_account(emu: EmulatorHandle) -> None:
    emu.admin.create_account(access_token="other")
    emu.admin.set_latency(per_call_ms=800)

    async def both() -> tuple[list[httpx.Response], httpx.Response]:
        burst = asyncio.ensure_future(_burst(emu.api_url + "/ping", 10))
        await asyncio.sleep(0.2)
        async with httpx.AsyncClient(headers={"Authorization": "Bearer other"}) as c:
            other = await c.get(emu.api_url + "/ping")
        return await burst, other

    burst, other = asyncio.run(both())
    assert all(r.status_code == 200 for r in burst) and other.status_code == 200


def test_latency_per_call_and_per_member(emu: EmulatorHandle, api: httpx.Client) -> None:
    emu.admin.set_latency(per_call_ms=150, per_member_ms=3)
    start = time.perf_counter()
    api.get("/ping")
    assert 0.15 <= time.perf_counter() - start < 1.0
    members = [{"email_address": f"l{i}@gmail.com", "status_if_new": "subscribed"}
               for i in range(100)]
    start = time.perf_counter()
    assert api.post(f"/lists/{PLAIN}", json={"members": members}).status_code == 200
    assert 0.45 <= time.perf_counter() - start < 2.0  # 150 ms + 100 × 3 ms


def test_latency_set_at_start() -> None:
    from mcsync.emulator.testing import running_emulator

    with running_emulator(per_call_ms=120) as emu:
        emu.admin.create_account(access_token="t")
        start = time.perf_counter()
        httpx.get(emu.api_url + "/ping", headers={"Authorization": "Bearer t"})
        assert time.perf_counter() - start >= 0.12


def test_fault_by_count(emu: EmulatorHandle, api: httpx.Client) -> None:
    fault = emu.admin.add_fault(status=500, count=2, path_regex="/ping$")
    assert fault["id"] and fault["count"] == 2
    codes = [api.get("/ping").status_code for _ in range(3)]
    assert codes == [500, 500, 200]
    assert api.get("/lists").status_code == 200


def test_fault_filters_by_method_and_token(emu: EmulatorHandle, api: httpx.Client) -> None:
    emu.admin.create_account(access_token="other")
    emu.admin.add_fault(status=503, method="POST", access_token=TOKEN)
    assert api.get("/ping").status_code == 200
    assert api.post(f"/lists/{PLAIN}/members", json={}).status_code == 503
    other = httpx.post(emu.api_url + "/lists/x/members", json={},
                       headers={"Authorization": "Bearer other"})
    assert other.status_code == 404


def test_fault_bodiless_403_and_clear(emu: EmulatorHandle, api: httpx.Client) -> None:
    emu.admin.add_fault(status=403, bodiless=True)
    r = api.get("/ping")
    assert r.status_code == 403 and r.content == b""
    emu.admin.clear_faults()
    assert api.get("/ping").status_code == 200


def test_fault_by_body_content(emu: EmulatorHandle, api: httpx.Client) -> None:
    emu.admin.add_fault(status=400, method="POST", body_contains="bad@x.com")
    members = f"/lists/{PLAIN}/members"
    ok = {"email_address": "ok@x.com", "status": "subscribed"}
    assert api.post(members, json=ok).status_code == 200
    bad = {"email_address": "bad@x.com", "status": "subscribed"}
    r = api.post(members, json=bad)
    assert r.status_code == 400 and api.get(f"{members}/bad@x.com").status_code == 404
    with pytest.raises(RuntimeError, match="body_contains"):
        emu.admin.add_fault(status=400, body_contains="")


def _pattern(emu: EmulatorHandle, api: httpx.Client, seed: int) -> list[int]:
    emu.admin.add_fault(status=429, rate=0.3, seed=seed)
    codes = [api.get("/ping").status_code for _ in range(60)]
    emu.admin.clear_faults()
    return codes


def test_fault_by_rate_is_seeded(emu: EmulatorHandle, api: httpx.Client) -> None:
    first = _pattern(emu, api, seed=7)
    second = _pattern(emu, api, seed=7)
    assert first == second
    assert 5 <= first.count(429) <= 35
    assert set(first) == {200, 429}


def test_reset_reseeds(emu: EmulatorHandle) -> None:
    def run() -> list[int]:
        emu.admin.create_account(access_token="t")
        emu.admin.add_fault(status=500, rate=0.5)
        with httpx.Client(headers={"Authorization": "Bearer t"}) as client:
            return [client.get(emu.api_url + "/ping").status_code for _ in range(30)]

    emu.admin.reset(seed=99)
    a = run()
    emu.admin.reset(seed=99)
    assert run() == a


def test_fault_timeout_holds_then_504(emu: EmulatorHandle, api: httpx.Client) -> None:
    emu.admin.add_fault(timeout=0.6, count=1)
    with pytest.raises(httpx.ReadTimeout):
        api.get("/ping", timeout=0.2)
    time.sleep(0.6)
    emu.admin.add_fault(timeout=0.3, count=1)
    start = time.perf_counter()
    r = api.get("/ping")
    assert r.status_code == 504 and time.perf_counter() - start >= 0.3


def test_faults_only_touch_the_api(emu: EmulatorHandle) -> None:
    emu.admin.add_fault(status=500)
    assert emu.admin.state()["accounts"]  # admin unaffected
    assert httpx.post(emu.login_url + "/oauth2/token", data={}).status_code == 400


def test_bad_fault_spec(emu: EmulatorHandle) -> None:
    r = httpx.post(emu.url + "/_emulator/faults", json={"rate": 0.5})
    assert r.status_code == 400
    r = httpx.post(emu.url + "/_emulator/faults", json={"status": 500, "timeout": 1})
    assert r.status_code == 400
