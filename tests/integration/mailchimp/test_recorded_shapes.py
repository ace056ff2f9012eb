"""mcsync.mailchimp against the answer shapes recorded from real Mailchimp (issue 13), served by
the emulator over real HTTP: errors without `type` or `errors[]`, the 405 archive refusal, the
whole-batch 400, the temporary signup refusal, members without optional fields."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from mcsync.emulator.testing import EmulatorHandle
from mcsync.mailchimp import (
    BatchMember,
    ContactLevelError,
    MailchimpClient,
    Member,
    RequestError,
    classify_batch_error,
    error_from_response,
    failed_batch_items,
    subscriber_hash,
)

pytestmark = pytest.mark.anyio

TOKEN = "tok-shapes"
LIST = "shapes"


@pytest.fixture
def emu(emulator: EmulatorHandle) -> EmulatorHandle:
    emulator.admin.create_account(
        access_token=TOKEN, audiences=[{"id": LIST, "name": "Shapes", "double_optin": True}]
    )
    return emulator


@asynccontextmanager
async def client_for(emu: EmulatorHandle) -> AsyncIterator[MailchimpClient]:
    async with MailchimpClient(emu.api_url, TOKEN) as mc:
        yield mc


def statuses(emu: EmulatorHandle) -> dict[str, str]:
    return {m["email_address"]: m["status"] for m in emu.admin.members(LIST)}


def raw(emu: EmulatorHandle, method: str, path: str, body: Any = None) -> httpx.Response:
    """One request with plain httpx, to look at the body the client is given."""
    return httpx.request(
        method, emu.api_url + path, json=body, headers={"Authorization": f"Bearer {TOKEN}"}
    )


@pytest.mark.parametrize("status", ["pending", "cleaned", "archived"])
async def test_archive_refusal_is_contact_level_and_leaves_the_member(
    emu: EmulatorHandle, status: str
) -> None:
    emu.admin.add_member(LIST, "stay@acme.io", status=status)
    async with client_for(emu) as mc:
        with pytest.raises(ContactLevelError) as exc:
            await mc.archive_member(LIST, subscriber_hash("stay@acme.io"))
    assert (exc.value.status, exc.value.kind) == (405, "cannot_archive")
    assert "cannot be removed" in exc.value.reason
    assert statuses(emu) == {"stay@acme.io": status}


async def test_errors_without_type_classify_by_title(emu: EmulatorHandle) -> None:
    async with client_for(emu) as mc:
        await mc.upsert_member(LIST, "here@acme.io", merge_fields={}, status_if_new="subscribed")
        exists = raw(emu, "POST", f"/lists/{LIST}/members",
                     {"email_address": "here@acme.io", "status": "subscribed"})
        assert "type" not in exists.json()
        err = error_from_response(exists)
        assert isinstance(err, ContactLevelError) and err.kind == "member_exists"

        emu.admin.unsubscribe(LIST, "here@acme.io")  # the person's own: a compliance state
        with pytest.raises(ContactLevelError) as held:
            await mc.upsert_member(
                LIST, "here@acme.io", merge_fields={}, status_if_new="subscribed",
                status="subscribed",
            )
        assert held.value.kind == "compliance" and held.value.title == "Member In Compliance State"

        emu.admin.forget(LIST, "here@acme.io")
        with pytest.raises(ContactLevelError) as gone:
            await mc.upsert_member(LIST, "here@acme.io", merge_fields={}, status_if_new="pending")
        assert gone.value.kind == "forgotten" and not gone.value.errors
    assert statuses(emu) == {}


async def test_an_api_unsubscribe_can_be_reversed(emu: EmulatorHandle) -> None:
    async with client_for(emu) as mc:
        await mc.upsert_member(LIST, "u@acme.io", merge_fields={}, status_if_new="subscribed")
        out = await mc.upsert_member(
            LIST, "u@acme.io", merge_fields={}, status_if_new="subscribed", status="unsubscribed"
        )
        back = await mc.upsert_member(
            LIST, "u@acme.io", merge_fields={}, status_if_new="subscribed", status="subscribed"
        )
    assert (out.status, back.status) == ("unsubscribed", "subscribed")
    assert statuses(emu) == {"u@acme.io": "subscribed"}


async def test_signup_refusal_has_its_own_kind_everywhere(emu: EmulatorHandle) -> None:
    emu.admin.limit_signups("busy@acme.io")
    async with client_for(emu) as mc:
        with pytest.raises(ContactLevelError) as exc:
            await mc.upsert_member(LIST, "busy@acme.io", merge_fields={}, status_if_new="pending")
        assert (exc.value.kind, exc.value.errors) == ("signup_limited", [])
        assert exc.value.title == "Invalid Resource"
        result = await mc.batch_subscribe(
            LIST,
            [BatchMember(email_address=e, status_if_new="pending")
             for e in ("busy@acme.io", "calm@acme.io")],
        )
    assert [classify_batch_error(e).kind for e in result.errors] == ["signup_limited"]
    assert [m.email_address for m in result.new_members] == ["calm@acme.io"]
    assert statuses(emu) == {"calm@acme.io": "pending"}


async def test_whole_batch_400_names_the_bad_member(emu: EmulatorHandle) -> None:
    async with client_for(emu) as mc:
        with pytest.raises(RequestError) as exc:
            await mc.batch_subscribe(
                LIST,
                [
                    BatchMember(email_address="a@acme.io", status_if_new="subscribed"),
                    BatchMember(email_address="b@acme.io", status_if_new="subscribed",
                                merge_fields={"FNAME": None}),
                    BatchMember(email_address="c@acme.io", status_if_new="bogus"),
                ],
            )
    assert exc.value.status == 400 and exc.value.title == "Invalid Resource"
    assert failed_batch_items(exc.value) == [1, 2]
    assert statuses(emu) == {}  # nothing applied


async def test_members_without_optional_fields_parse(emu: EmulatorHandle) -> None:
    emu.admin.add_member(LIST, "plain@acme.io")
    async with client_for(emu) as mc:
        got = await mc.get_member(LIST, "plain@acme.io")
        page = await mc.list_members(LIST, fields=["merge_fields"])
    assert got is not None and got.status == "subscribed"
    assert "unsubscribe_reason" not in raw(
        emu, "GET", f"/lists/{LIST}/members/{subscriber_hash('plain@acme.io')}"
    ).json()
    assert [m.id for m in page.members] == [subscriber_hash("plain@acme.io")]
    # Whatever Mailchimp leaves out or sends as null takes its default.
    bare = Member.model_validate(
        {"email_address": "Bare@acme.io", "merge_fields": None, "tags": None, "status": None}
    )
    assert (bare.id, bare.status, bare.merge_fields, bare.tags) == (
        subscriber_hash("bare@acme.io"), "", {}, [])
