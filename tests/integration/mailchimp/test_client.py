"""mcsync.mailchimp against the emulator over real HTTP: behaviours, error taxonomy, limits, OAuth.

Each test asserts the emulator's resulting state, not merely that no exception was raised.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
import structlog

from mcsync.config import Settings
from mcsync.emulator.testing import EmulatorHandle
from mcsync.mailchimp import (
    BatchMember,
    ConnectionLevelError,
    ContactLevelError,
    MailchimpClient,
    NotFoundError,
    OAuthError,
    TransientError,
    authorize_url,
    classify_batch_error,
    exchange_code,
    fetch_metadata,
    make_http_client,
    subscriber_hash,
)
from mcsync.mailchimp.client import ClientFactory
from mcsync.mailchimp.endpoints import InvalidDataCenter, api_base

pytestmark = pytest.mark.anyio

TOKEN = "tok-client-tests"
MAIN = "main"  # LNAME required, US phone format
OPTIN = "optin"  # double opt-in, nothing required


@pytest.fixture
def emu(emulator: EmulatorHandle) -> EmulatorHandle:
    emulator.admin.create_account(
        dc="us1",
        account_name="Acme",
        access_token=TOKEN,
        audiences=[
            {
                "id": MAIN,
                "name": "Main",
                "double_optin": False,
                "phone_format": "US",
                "required_fields": ["LNAME"],
            },
            {"id": OPTIN, "name": "Opt-in", "double_optin": True},
        ],
    )
    return emulator


@asynccontextmanager
async def client_for(
    emu: EmulatorHandle, token: str = TOKEN, **kw: Any
) -> AsyncIterator[MailchimpClient]:
    async with MailchimpClient(emu.api_url, token, **kw) as mc:
        yield mc


def members(emu: EmulatorHandle, list_id: str = MAIN) -> dict[str, dict[str, Any]]:
    """The emulator's members of an audience, by lowercased email."""
    return {m["email_address"].lower(): m for m in emu.admin.members(list_id)}


def tag_names(member: dict[str, Any]) -> set[str]:
    return {t["name"] for t in member["tags"]}


NAMES = {"FNAME": "Ann", "LNAME": "Lee"}


# -- account and discovery --------------------------------------------------------------------


async def test_ping_account_and_audiences(emu: EmulatorHandle) -> None:
    async with client_for(emu) as mc:
        await mc.ping()
        account = await mc.get_account()
        assert account["account_name"] == "Acme" and account["account_id"]
        await mc.upsert_member(MAIN, "ann@acme.io", merge_fields=NAMES, status_if_new="subscribed")
        await mc.upsert_member(MAIN, "bo@acme.io", merge_fields=NAMES, status_if_new="unsubscribed")
        audiences = {a.id: a for a in await mc.list_audiences()}
        assert set(audiences) == {MAIN, OPTIN}
        assert audiences[OPTIN].double_optin is True and audiences[MAIN].double_optin is False
        assert audiences[MAIN].name == "Main"
        assert audiences[MAIN].member_count == 1  # subscribed only, from stats.member_count
        one = await mc.get_audience(OPTIN)
        assert one.id == OPTIN and one.double_optin and one.member_count == 0
        with pytest.raises(NotFoundError):
            await mc.get_audience("nope")


# -- upsert and tags --------------------------------------------------------------------------


async def test_upsert_creates_and_updates_on_the_md5_hash(emu: EmulatorHandle) -> None:
    async with client_for(emu) as mc:
        m = await mc.upsert_member(
            MAIN, " Ann@Acme.io ", merge_fields=NAMES, status_if_new="subscribed"
        )
        assert m.id == subscriber_hash("ann@acme.io") and m.status == "subscribed"
        assert m.list_id == MAIN and m.merge_fields["FNAME"] == "Ann"
        m2 = await mc.upsert_member(
            MAIN, "ann@acme.io", merge_fields={"FNAME": "Anne"}, status_if_new="subscribed"
        )
        assert m2.id == m.id and m2.merge_fields["FNAME"] == "Anne"
        assert await mc.get_member(MAIN, "ANN@acme.io") == await mc.get_member(MAIN, m.id)
        assert await mc.get_member(MAIN, "nobody-here@acme.io") is None
    state = members(emu)
    assert list(state) == ["ann@acme.io"]
    assert state["ann@acme.io"]["merge_fields"]["FNAME"] == "Anne"
    puts = [r for r in emu.admin.requests() if r["method"] == "PUT"]
    assert {r["path"] for r in puts} == {f"/3.0/lists/{MAIN}/members/{m.id}"}


async def test_tags_on_put_are_ignored_for_existing_members_so_the_tags_endpoint_is_used(
    emu: EmulatorHandle,
) -> None:
    email = "tagged@acme.io"
    h = subscriber_hash(email)
    async with client_for(emu) as mc:
        await mc.upsert_member(MAIN, email, merge_fields=NAMES, status_if_new="subscribed")
        # What a naive client would do: tags in the PUT body. Mailchimp drops them silently.
        async with httpx.AsyncClient() as raw_http:
            raw = await raw_http.put(
                f"{emu.api_url}/lists/{MAIN}/members/{h}",
                headers={"Authorization": f"Bearer {TOKEN}"},
                json={"email_address": email, "status_if_new": "subscribed", "tags": ["vip"]},
            )
        assert raw.status_code == 200
        assert tag_names(members(emu)[email]) == set()

        before = len(emu.admin.requests())
        await mc.update_member_tags(MAIN, h)  # nothing to do: no request at all
        assert len(emu.admin.requests()) == before

        await mc.update_member_tags(MAIN, h, active=["vip", "2024"])
        assert tag_names(members(emu)[email]) == {"vip", "2024"}
        emu.admin.tag(MAIN, email, "hand-made")  # a marketer's own tag
        await mc.update_member_tags(MAIN, h, active=["gold"], inactive=["vip"])
        assert tag_names(members(emu)[email]) == {"2024", "gold", "hand-made"}
        got = await mc.get_member(MAIN, h)
        assert got is not None and {t.name for t in got.tags} == {"2024", "gold", "hand-made"}
        assert all(t.id is not None for t in got.tags)

        with pytest.raises(NotFoundError):
            await mc.update_member_tags(MAIN, subscriber_hash("ghost@acme.io"), active=["x"])


async def test_status_if_new_is_ignored_for_existing_members_and_does_not_unarchive(
    emu: EmulatorHandle,
) -> None:
    async with client_for(emu) as mc:
        await mc.upsert_member(MAIN, "un@acme.io", merge_fields=NAMES, status_if_new="subscribed")
        emu.admin.unsubscribe(MAIN, "un@acme.io")
        m = await mc.upsert_member(
            MAIN,
            "un@acme.io",
            merge_fields={"FNAME": "Changed"},
            status_if_new="subscribed",
        )
        assert m.status == "unsubscribed" and m.merge_fields["FNAME"] == "Changed"
        assert members(emu)["un@acme.io"]["status"] == "unsubscribed"

        await mc.upsert_member(MAIN, "arc@acme.io", merge_fields=NAMES, status_if_new="subscribed")
        await mc.archive_member(MAIN, subscriber_hash("arc@acme.io"))
        assert members(emu)["arc@acme.io"]["status"] == "archived"
        m = await mc.upsert_member(
            MAIN, "arc@acme.io", merge_fields=NAMES, status_if_new="subscribed"
        )
        assert m.status == "archived"
        assert members(emu)["arc@acme.io"]["status"] == "archived"
        # Only an explicit status unarchives.
        m = await mc.upsert_member(
            MAIN, "arc@acme.io", merge_fields=NAMES, status_if_new="subscribed", status="subscribed"
        )
        assert m.status == "subscribed"
        assert members(emu)["arc@acme.io"]["status"] == "subscribed"


async def test_member_in_compliance_state(emu: EmulatorHandle) -> None:
    emu.admin.add_member(MAIN, "cleaned@acme.io", status="cleaned", merge_fields=NAMES)
    async with client_for(emu) as mc:
        await mc.upsert_member(MAIN, "out@acme.io", merge_fields=NAMES, status_if_new="subscribed")
        emu.admin.unsubscribe(MAIN, "out@acme.io")
        for email in ("out@acme.io", "cleaned@acme.io"):
            with pytest.raises(ContactLevelError) as exc:
                await mc.upsert_member(
                    MAIN, email, merge_fields=NAMES, status_if_new="subscribed", status="subscribed"
                )
            assert exc.value.kind == "compliance" and exc.value.status == 400
            assert "Member In Compliance State" in exc.value.reason
    state = members(emu)
    assert state["out@acme.io"]["status"] == "unsubscribed"
    assert state["cleaned@acme.io"]["status"] == "cleaned"


# -- email changes, archive, forget -----------------------------------------------------------


async def test_email_change_patches_the_old_hash(emu: EmulatorHandle) -> None:
    async with client_for(emu) as mc:
        old = await mc.upsert_member(
            MAIN, "old@acme.io", merge_fields=NAMES, status_if_new="subscribed"
        )
        await mc.update_member_tags(MAIN, old.id, active=["kept"])
        new = await mc.change_member_email(
            MAIN, old.id, "New@acme.io", merge_fields={"FNAME": "Renamed"}
        )
        assert new.id == subscriber_hash("new@acme.io") and new.email_address == "New@acme.io"
        assert await mc.get_member(MAIN, "old@acme.io") is None
        state = members(emu)
        assert set(state) == {"new@acme.io"}  # moved, not duplicated
        assert state["new@acme.io"]["merge_fields"]["FNAME"] == "Renamed"
        assert tag_names(state["new@acme.io"]) == {"kept"}
        patch = [r for r in emu.admin.requests() if r["method"] == "PATCH"]
        assert [r["path"] for r in patch] == [f"/3.0/lists/{MAIN}/members/{old.id}"]

        # The new address already exists: a permanent per-contact conflict.
        await mc.upsert_member(MAIN, "taken@acme.io", merge_fields=NAMES, status_if_new="pending")
        with pytest.raises(ContactLevelError) as exc:
            await mc.change_member_email(MAIN, new.id, "taken@acme.io", merge_fields={})
        assert exc.value.kind == "already_in_list" and exc.value.field == "email_address"
        assert "already in this list" in exc.value.reason
        assert set(members(emu)) == {"new@acme.io", "taken@acme.io"}

        with pytest.raises(NotFoundError):
            await mc.change_member_email(
                MAIN, subscriber_hash("ghost@acme.io"), "g2@acme.io", merge_fields={}
            )


async def test_archive_member(emu: EmulatorHandle) -> None:
    async with client_for(emu) as mc:
        m = await mc.upsert_member(
            MAIN, "leaving@acme.io", merge_fields=NAMES, status_if_new="subscribed"
        )
        await mc.archive_member(MAIN, m.id)
        assert members(emu)["leaving@acme.io"]["status"] == "archived"
        got = await mc.get_member(MAIN, m.id)
        assert got is not None and got.status == "archived"
        with pytest.raises(NotFoundError) as exc:
            await mc.archive_member(MAIN, subscriber_hash("ghost@acme.io"))
        assert exc.value.status == 404 and exc.value.request_id


async def test_forgotten_member_is_404_and_cannot_be_readded(emu: EmulatorHandle) -> None:
    async with client_for(emu) as mc:
        await mc.upsert_member(MAIN, "gone@acme.io", merge_fields=NAMES, status_if_new="subscribed")
        emu.admin.forget(MAIN, "gone@acme.io")
        assert await mc.get_member(MAIN, "gone@acme.io") is None
        with pytest.raises(ContactLevelError) as exc:
            await mc.upsert_member(
                MAIN, "gone@acme.io", merge_fields=NAMES, status_if_new="subscribed"
            )
        assert exc.value.kind == "forgotten" and exc.value.status == 400
        assert "permanently deleted" in exc.value.reason
        result = await mc.batch_subscribe(
            MAIN, [BatchMember(email_address="gone@acme.io", status_if_new="subscribed")]
        )
        assert result.error_count == 1
        assert classify_batch_error(result.errors[0]).kind == "forgotten"
    assert "gone@acme.io" not in members(emu)


# -- validation -------------------------------------------------------------------------------


async def test_fake_and_invalid_addresses(emu: EmulatorHandle) -> None:
    async with client_for(emu) as mc:
        with pytest.raises(ContactLevelError) as exc:
            await mc.upsert_member(
                MAIN, "someone@example.com", merge_fields=NAMES, status_if_new="subscribed"
            )
        assert exc.value.kind == "fake_email" and exc.value.field == "email_address"
        assert "looks fake or invalid" in exc.value.reason
        with pytest.raises(ContactLevelError) as exc:
            await mc.upsert_member(
                MAIN, "not-an-address@", merge_fields=NAMES, status_if_new="subscribed"
            )
        assert exc.value.kind == "invalid_email"
    assert members(emu) == {}


async def test_required_merge_field_and_us_phone(emu: EmulatorHandle) -> None:
    async with client_for(emu) as mc:
        with pytest.raises(ContactLevelError) as exc:
            await mc.upsert_member(
                MAIN, "nolast@acme.io", merge_fields={"FNAME": "A"}, status_if_new="subscribed"
            )
        assert (exc.value.kind, exc.value.field) == ("merge_fields", "LNAME")
        assert "Please enter a value" in exc.value.reason
        with pytest.raises(ContactLevelError) as exc:
            await mc.upsert_member(
                MAIN,
                "phone@acme.io",
                merge_fields={**NAMES, "PHONE": "12345"},
                status_if_new="subscribed",
            )
        assert (exc.value.kind, exc.value.field) == ("merge_fields", "PHONE")
        assert members(emu) == {}
        m = await mc.upsert_member(
            MAIN,
            "phone@acme.io",
            merge_fields={**NAMES, "PHONE": "404-555-1212"},
            status_if_new="subscribed",
        )
        assert m.merge_fields["PHONE"] == "404-555-1212"
        # The optin audience has no required fields and an international phone format.
        await mc.upsert_member(
            OPTIN, "nolast@acme.io", merge_fields={"PHONE": "12345"}, status_if_new="pending"
        )
    assert members(emu)["phone@acme.io"]["merge_fields"]["PHONE"] == "404-555-1212"
    assert members(emu, OPTIN)["nolast@acme.io"]["status"] == "pending"


# -- batch subscribe --------------------------------------------------------------------------


async def test_batch_subscribe_with_per_member_errors(emu: EmulatorHandle) -> None:
    emu.admin.add_member(MAIN, "old.timer@acme.io", status="unsubscribed", merge_fields=NAMES)
    batch = [
        BatchMember(
            email_address="fresh@acme.io",
            status_if_new="subscribed",
            merge_fields=NAMES,
            tags=["imported"],
        ),
        BatchMember(
            email_address="old.timer@acme.io",
            status_if_new="subscribed",
            merge_fields={"FNAME": "Olde"},
        ),
        BatchMember(
            email_address="who@example.com", status_if_new="subscribed", merge_fields=NAMES
        ),
        BatchMember(
            email_address="nolast@acme.io", status_if_new="subscribed", merge_fields={"FNAME": "N"}
        ),
        BatchMember(
            email_address="badphone@acme.io",
            status_if_new="subscribed",
            merge_fields={**NAMES, "PHONE": "call me"},
        ),
    ]
    async with client_for(emu) as mc:
        result = await mc.batch_subscribe(MAIN, batch)
        assert (result.total_created, result.total_updated, result.error_count) == (1, 1, 3)
        assert [m.email_address for m in result.new_members] == ["fresh@acme.io"]
        assert [m.email_address for m in result.updated_members] == ["old.timer@acme.io"]
        kinds = {e.email_address: classify_batch_error(e) for e in result.errors}
        assert kinds["who@example.com"].kind == "fake_email"
        assert (kinds["nolast@acme.io"].kind, kinds["nolast@acme.io"].field) == (
            "merge_fields",
            "LNAME",
        )
        assert (kinds["badphone@acme.io"].kind, kinds["badphone@acme.io"].field) == (
            "merge_fields",
            "PHONE",
        )
        state = members(emu)
        assert set(state) == {"fresh@acme.io", "old.timer@acme.io"}
        assert tag_names(state["fresh@acme.io"]) == {"imported"}
        # status_if_new does not resubscribe an existing member; the data update still lands.
        assert state["old.timer@acme.io"]["status"] == "unsubscribed"
        assert state["old.timer@acme.io"]["merge_fields"]["FNAME"] == "Olde"

        again = await mc.batch_subscribe(MAIN, batch[:1], update_existing=False)
        assert again.error_count == 1 and again.total_created == 0
        err = classify_batch_error(again.errors[0])
        assert err.kind == "member_exists" and again.errors[0].error_code == "ERROR_CONTACT_EXISTS"

        before = len(emu.admin.requests())
        with pytest.raises(ValueError):
            await mc.batch_subscribe(
                MAIN,
                [
                    BatchMember(email_address=f"u{i}@acme.io", status_if_new="subscribed")
                    for i in range(501)
                ],
            )
        assert len(emu.admin.requests()) == before
    batch_calls = [r for r in emu.admin.requests() if r["path"] == f"/3.0/lists/{MAIN}"]
    assert len(batch_calls) == 2


async def test_iter_members_pages_across_more_than_1000(emu: EmulatorHandle) -> None:
    total = 1_234
    async with client_for(emu) as mc:
        for start in range(0, total, 500):
            chunk = [
                BatchMember(
                    email_address=f"person{i}@acme.io",
                    status_if_new="subscribed",
                    merge_fields=NAMES,
                )
                for i in range(start, min(total, start + 500))
            ]
            result = await mc.batch_subscribe(MAIN, chunk)
            assert result.error_count == 0
        await mc.archive_member(MAIN, subscriber_hash("person0@acme.io"))

        seen = [m async for m in mc.iter_members(MAIN)]
        assert len(seen) == total - 1 == len({m.id for m in seen})
        assert {m.email_address for m in seen} == {f"person{i}@acme.io" for i in range(1, total)}
        gets = [
            r
            for r in emu.admin.requests()
            if r["method"] == "GET" and r["path"] == f"/3.0/lists/{MAIN}/members"
        ]
        assert len(gets) == 2  # 1000 + 233

        archived = [m async for m in mc.iter_members(MAIN, status="archived", page_size=10)]
        assert [m.email_address for m in archived] == ["person0@acme.io"]

        page = await mc.list_members(MAIN, count=5, offset=10, fields=["merge_fields"])
        assert len(page.members) == 5 and page.total_items == total - 1
        assert page.members[0].merge_fields["LNAME"] == "Lee"
        with pytest.raises(ValueError):
            await mc.list_members(MAIN, count=1001)
    assert len(members(emu)) == total


# -- error taxonomy over the wire -------------------------------------------------------------


async def test_429_is_throttled_transient_with_and_without_a_body(emu: EmulatorHandle) -> None:
    async with client_for(emu) as mc:
        emu.admin.add_fault(status=429, count=1)
        with pytest.raises(TransientError) as exc:
            await mc.ping()
        assert exc.value.throttled and exc.value.status == 429 and exc.value.request_id
        assert exc.value.title == "Too Many Requests"

        emu.admin.add_fault(status=429, count=1, bodiless=True)
        with pytest.raises(TransientError) as exc:
            await mc.upsert_member(
                MAIN, "t@acme.io", merge_fields=NAMES, status_if_new="subscribed"
            )
        assert exc.value.throttled and exc.value.status == 429 and exc.value.request_id
        assert exc.value.detail == ""
        await mc.ping()  # the faults are used up
    assert members(emu) == {}


async def test_5xx_timeouts_and_network_errors_are_transient(emu: EmulatorHandle) -> None:
    async with client_for(emu, timeout=0.5) as mc:
        for status, bodiless in ((500, False), (502, True), (503, False)):
            emu.admin.add_fault(status=status, count=1, bodiless=bodiless, method="PUT")
            with pytest.raises(TransientError) as exc:
                await mc.upsert_member(
                    MAIN, "five@acme.io", merge_fields=NAMES, status_if_new="subscribed"
                )
            assert exc.value.status == status and not exc.value.throttled
        assert members(emu) == {}

        emu.admin.add_fault(timeout=3, count=1, path_regex="/ping$")
        with pytest.raises(TransientError) as exc:
            await mc.ping()
        assert exc.value.status is None and exc.value.title == "Timeout"

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with MailchimpClient(f"http://127.0.0.1:{port}/3.0", TOKEN, timeout=2) as dead:
        with pytest.raises(TransientError) as exc:
            await dead.ping()
        assert exc.value.status is None


async def test_revoked_token_is_connection_level(emu: EmulatorHandle) -> None:
    async with client_for(emu) as mc:
        await mc.ping()
        emu.admin.revoke(TOKEN)
        with pytest.raises(ConnectionLevelError) as exc:
            await mc.list_audiences()
        assert exc.value.status == 401 and exc.value.title == "API Key Invalid"
        assert exc.value.request_id
        assert TOKEN not in str(exc.value) and TOKEN not in repr(exc.value)


async def test_403_bodiless_is_transient_but_with_a_body_is_connection_level(
    emu: EmulatorHandle,
) -> None:
    async with client_for(emu) as mc:
        emu.admin.add_fault(status=403, count=1, bodiless=True)
        with pytest.raises(TransientError) as t_exc:
            await mc.ping()
        assert t_exc.value.status == 403
        emu.admin.add_fault(status=403, count=1)
        with pytest.raises(ConnectionLevelError) as c_exc:
            await mc.ping()
        assert c_exc.value.status == 403 and c_exc.value.title == "Forbidden"


async def test_request_id_is_captured(emu: EmulatorHandle) -> None:
    async with client_for(emu) as mc:
        with pytest.raises(ContactLevelError) as exc:
            await mc.upsert_member(
                MAIN, "x@example.com", merge_fields=NAMES, status_if_new="subscribed"
            )
    rid = exc.value.request_id
    assert rid and len(rid) >= 16


async def test_ten_concurrent_requests_are_served_and_the_eleventh_gets_429(
    emu: EmulatorHandle,
) -> None:
    emu.admin.set_latency(per_call_ms=600)
    # A pool wider than Mailchimp's cap, so that 11 requests really are in flight at once.
    async with make_http_client(30, httpx.Limits(max_connections=20)) as http:
        mc = MailchimpClient(emu.api_url, TOKEN, http=http)
        results = await asyncio.gather(*(mc.ping() for _ in range(11)), return_exceptions=True)
        ok = [r for r in results if r is None]
        refused = [r for r in results if isinstance(r, TransientError)]
        assert len(ok) == 10 and len(refused) == 1, results
        assert refused[0].throttled and refused[0].status == 429
        await mc.aclose()  # a shared pool is not closed by the client
        await mc.ping()
    statuses = [r["status"] for r in emu.admin.requests() if r["path"] == "/3.0/ping"]
    assert sorted(statuses) == [200] * 11 + [429]

    # The client's own pool never opens more than 10 connections: 11 calls queue, none refused.
    async with client_for(emu) as mc:
        await asyncio.gather(*(mc.ping() for _ in range(11)))


async def test_shared_pool_serves_two_accounts(emu: EmulatorHandle) -> None:
    other = emu.admin.create_account(account_name="Other", audiences=[{"id": "o1", "name": "O"}])
    async with make_http_client() as http:
        a = MailchimpClient(emu.api_url, TOKEN, http=http)
        b = MailchimpClient(emu.api_url, other["access_token"], http=http)
        assert (await a.get_account())["account_name"] == "Acme"
        assert (await b.get_account())["account_name"] == "Other"
        assert [x.id for x in await b.list_audiences()] == ["o1"]
        with pytest.raises(NotFoundError):  # another account's audience is invisible
            await b.get_audience(MAIN)


async def test_one_log_line_per_call_without_secrets(emu: EmulatorHandle) -> None:
    async with client_for(emu) as mc:
        with structlog.testing.capture_logs() as logs:
            await mc.upsert_member(
                MAIN, "private@acme.io", merge_fields=NAMES, status_if_new="subscribed"
            )
            with pytest.raises(ContactLevelError):
                await mc.upsert_member(
                    MAIN, "private@acme.io", merge_fields={"LNAME": ""}, status_if_new="subscribed"
                )
    assert [(e["op"], e["status"], e["outcome"]) for e in logs] == [
        ("upsert_member", 200, "ok"),
        ("upsert_member", 400, "ContactLevelError"),
    ]
    # The one line per call (the applier no longer logs its own): a success at info, a
    # failure at warning with Mailchimp's error text (its address replaced).
    assert [e["log_level"] for e in logs] == ["info", "warning"]
    assert "error" not in logs[0] and "Invalid Resource" in logs[1]["error"]
    for e in logs:
        assert isinstance(e["duration_ms"], float)
        text = repr(e)
        assert TOKEN not in text and "private@acme.io" not in text


def test_an_accounts_url_is_built_in_one_place() -> None:
    template = "https://{dc}.api.mailchimp.com/3.0/"
    assert api_base(template, "us7") == "https://us7.api.mailchimp.com/3.0"
    assert Settings(mailchimp_api_url=template).api_base("us7") == api_base(template, "us7")
    assert ClientFactory(template).client("us7", TOKEN).base_url == api_base(template, "us7")
    # ...and that place checks the dc: a forged one never becomes a host the token is sent to.
    for forged in ("attacker.example/x?", "us7.evil.example", ""):
        with pytest.raises(InvalidDataCenter):
            ClientFactory(template).client(forged, TOKEN)
        with pytest.raises(InvalidDataCenter):
            Settings(mailchimp_api_url=template).api_base(forged)


async def test_the_factory_client_reports_each_call_to_its_observer_and_log(
    emu: EmulatorHandle,
) -> None:
    seen: list[tuple[str, str, float]] = []
    factory = ClientFactory(emu.api_url + "/", timeout=5)
    client = factory.client(
        "us1", TOKEN, observer=lambda *call: seen.append(call), log_context={"user_id": "u1"}
    )
    async with client as mc:
        with structlog.testing.capture_logs() as logs:
            assert (await mc.get_audience(MAIN)).id == MAIN
            with pytest.raises(NotFoundError):
                await mc.get_audience("nope")
    assert [(op, outcome) for op, outcome, _ in seen] == [
        ("get_audience", "ok"),
        ("get_audience", "NotFoundError"),
    ]
    assert all(seconds > 0 for _, _, seconds in seen)
    assert [(e["op"], e["outcome"], e["user_id"]) for e in logs] == [
        ("get_audience", "ok", "u1"),
        ("get_audience", "NotFoundError", "u1"),
    ]


# -- OAuth ------------------------------------------------------------------------------------


class _FormParser(HTMLParser):
    """Collects the authorize page's form: action, fields, and the Allow button."""

    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.method = "get"
        self.fields: dict[str, str] = {}
        self.buttons: dict[str, tuple[str, str]] = {}
        self.options: dict[str, list[str]] = {}
        self._select: str | None = None
        self._button: tuple[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action, self.method = a.get("action", ""), a.get("method", "get").lower()
        elif tag == "input" and a.get("name"):
            self.fields[a["name"]] = a.get("value", "")
        elif tag == "select":
            self._select = a.get("name")
        elif tag == "option" and self._select:
            if self._select not in self.fields or "selected" in a:
                self.fields[self._select] = a.get("value", "")
            if a.get("value"):
                self.options.setdefault(self._select, []).append(a["value"] or "")
        elif tag == "button":
            self._button = (a.get("name", ""), a.get("value", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "button":
            self._button = None

    def handle_data(self, data: str) -> None:
        if self._button is not None and data.strip():
            self.buttons[data.strip()] = self._button


async def test_the_whole_oauth_dance(emu: EmulatorHandle) -> None:
    redirect_uri = "https://app.example.org/mailchimp/callback"
    emu.admin.register_oauth_client("mcsync-app", "s3cret", redirect_uri)
    url = authorize_url(
        emu.login_url, client_id="mcsync-app", redirect_uri=redirect_uri, state="st-42"
    )
    async with httpx.AsyncClient(timeout=10) as browser:
        page = await browser.get(url)
        assert page.status_code == 200
        form = _FormParser()
        form.feed(page.text)
        name, value = form.buttons["Allow"]
        # The consent screen chooses no account; the user picks the (only) one.
        assert form.fields["account"] == ""
        data = {**form.fields, "account": form.options["account"][0], name: value}
        assert form.method == "post"
        answer = await browser.post(urljoin(str(page.url), form.action), data=data)
        assert answer.status_code in (302, 303)
        location = answer.headers["location"]
        assert location.startswith(redirect_uri + "?")
        query = parse_qs(urlsplit(location).query)
        assert query["state"] == ["st-42"]
        code = query["code"][0]

        token = await exchange_code(
            emu.login_url,
            client_id="mcsync-app",
            client_secret="s3cret",
            redirect_uri=redirect_uri,
            code=code,
            http=browser,
        )
        assert token == TOKEN  # the only account on the emulator
        with pytest.raises(OAuthError) as exc:  # codes are single use
            await exchange_code(
                emu.login_url,
                client_id="mcsync-app",
                client_secret="s3cret",
                redirect_uri=redirect_uri,
                code=code,
            )
        assert "invalid_grant" in str(exc.value) and code not in str(exc.value)

        meta = await fetch_metadata(emu.login_url, token)
        assert meta.dc == "us1" and meta.accountname == "Acme"
        assert meta.api_endpoint == emu.url and meta.login_url == emu.url
        with pytest.raises(OAuthError) as exc:
            await fetch_metadata(emu.login_url, "not-a-token", http=browser)
        assert exc.value.status == 401

    async with MailchimpClient(meta.api_endpoint + "/3.0", token) as mc:
        assert (await mc.get_account())["account_name"] == "Acme"
        await mc.upsert_member(
            MAIN, "oauth@acme.io", merge_fields=NAMES, status_if_new="subscribed"
        )
    assert members(emu)["oauth@acme.io"]["status"] == "subscribed"


async def test_oauth_failures_are_calm(emu: EmulatorHandle) -> None:
    redirect_uri = "https://app.example.org/cb"
    emu.admin.register_oauth_client("cid", "right", redirect_uri)
    with pytest.raises(OAuthError) as exc:
        await exchange_code(
            emu.login_url,
            client_id="cid",
            client_secret="wrong",
            redirect_uri=redirect_uri,
            code="whatever",
        )
    assert exc.value.status == 400 and "wrong" not in str(exc.value)
    with pytest.raises(OAuthError):
        await exchange_code(
            "http://127.0.0.1:9",
            client_id="cid",
            client_secret="right",
            redirect_uri=redirect_uri,
            code="c",
        )
    assert authorize_url(
        "https://login.mailchimp.com/", client_id="a b", redirect_uri="https://x/cb?y=1", state="s"
    ) == (
        "https://login.mailchimp.com/oauth2/authorize?response_type=code&client_id=a+b"
        "&redirect_uri=https%3A%2F%2Fx%2Fcb%3Fy%3D1&state=s"
    )
