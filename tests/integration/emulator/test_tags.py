"""The member tags endpoints."""

from __future__ import annotations

from datetime import datetime

import httpx

from mcsync.emulator.testing import EmulatorHandle

from .conftest import PLAIN, md5, problem, put

M = f"/lists/{PLAIN}/members"


def tags_of(api: httpx.Client, email: str) -> list[str]:
    return [t["name"] for t in api.get(f"{M}/{md5(email)}/tags").json()["tags"]]


def post_tags(api: httpx.Client, email: str, *tags: tuple[str, str]) -> httpx.Response:
    return api.post(f"{M}/{md5(email)}/tags",
                    json={"tags": [{"name": n, "status": s} for n, s in tags]})


def test_active_adds_inactive_removes_others_untouched(api: httpx.Client) -> None:
    put(api, "t@gmail.com")
    r = post_tags(api, "t@gmail.com", ("A", "active"), ("B", "active"))
    assert r.status_code == 204 and r.content == b""
    assert r.headers["content-type"].startswith("application/json")
    post_tags(api, "t@gmail.com", ("A", "inactive"), ("Never", "inactive"))
    assert tags_of(api, "t@gmail.com") == ["B"]


def test_empty_list_is_a_noop(api: httpx.Client) -> None:
    put(api, "t@gmail.com")
    post_tags(api, "t@gmail.com", ("A", "active"))
    assert api.post(f"{M}/{md5('t@gmail.com')}/tags", json={"tags": []}).status_code == 204
    assert tags_of(api, "t@gmail.com") == ["A"]


def test_names_match_case_insensitively_first_casing_wins(api: httpx.Client) -> None:
    put(api, "t@gmail.com")
    put(api, "u@gmail.com")
    post_tags(api, "t@gmail.com", ("Customer", "active"))
    post_tags(api, "u@gmail.com", ("CUSTOMER", "active"))
    post_tags(api, "t@gmail.com", ("customer", "active"))
    assert tags_of(api, "t@gmail.com") == ["Customer"]
    assert tags_of(api, "u@gmail.com") == ["Customer"]
    post_tags(api, "t@gmail.com", ("cUsToMeR", "inactive"))
    assert tags_of(api, "t@gmail.com") == []


def test_get_tags_shape(api: httpx.Client) -> None:
    put(api, "t@gmail.com")
    post_tags(api, "t@gmail.com", ("A", "active"))
    body = api.get(f"{M}/{md5('t@gmail.com')}/tags").json()
    assert body["total_items"] == 1
    (tag,) = body["tags"]
    assert isinstance(tag["id"], int) and tag["name"] == "A"
    # a date-time, as the description gives it (e.g. 2024-01-01T00:00:00+00:00)
    assert datetime.fromisoformat(tag["date_added"]).utcoffset() is not None
    member = api.get(f"{M}/{md5('t@gmail.com')}").json()
    assert member["tags"] == [{"id": tag["id"], "name": "A"}] and member["tags_count"] == 1


def test_unknown_member_is_404(api: httpx.Client) -> None:
    assert problem(post_tags(api, "ghost@gmail.com", ("A", "active")))["status"] == 404
    assert problem(api.get(f"{M}/{md5('ghost@gmail.com')}/tags"))["status"] == 404


def test_bad_tag_bodies(api: httpx.Client) -> None:
    put(api, "t@gmail.com")
    assert problem(post_tags(api, "t@gmail.com", ("A", "on")))["status"] == 400
    assert problem(post_tags(api, "t@gmail.com", ("x" * 101, "active")))["status"] == 400
    assert problem(api.post(f"{M}/{md5('t@gmail.com')}/tags", json={}))["status"] == 400


def test_tag_changes_touch_last_changed_at(emu: EmulatorHandle, api: httpx.Client) -> None:
    put(api, "t@gmail.com")
    before = emu.admin.members(PLAIN)[0]["last_changed_at"]
    post_tags(api, "t@gmail.com", ("A", "active"))
    after = emu.admin.members(PLAIN)[0]
    assert after["last_changed_at"] > before and after["tags"] == [{"name": "A"}]
