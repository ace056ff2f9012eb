"""Per-audience merge-field validation: required fields, US phone, types, clearing."""

from __future__ import annotations

import httpx
import pytest

from mcsync.emulator.testing import EmulatorHandle

from .conftest import PLAIN, STRICT, md5, problem, put

S = f"/lists/{STRICT}/members"


def test_required_field_missing_on_create(api: httpx.Client) -> None:
    r = put(api, "r@gmail.com", STRICT, merge_fields={"FNAME": "R"})
    body = problem(r)
    assert body["title"] == "Invalid Resource"
    assert body["detail"] == "Your merge fields were invalid."
    assert body["errors"] == [{"field": "LNAME", "message": "Please enter a value"}]
    r = api.post(S, json={"email_address": "r@gmail.com", "status": "subscribed"})
    assert problem(r)["errors"] == [{"field": "LNAME", "message": "Please enter a value"}]


def test_required_field_emptied_on_update(api: httpx.Client) -> None:
    assert put(api, "r@gmail.com", STRICT, merge_fields={"LNAME": "Roe"}).status_code == 200
    r = put(api, "r@gmail.com", STRICT, merge_fields={"LNAME": ""})
    assert problem(r)["errors"] == [{"field": "LNAME", "message": "Please enter a value"}]
    r = api.patch(f"{S}/{md5('r@gmail.com')}", json={"merge_fields": {"LNAME": ""}})
    assert problem(r)["errors"] == [{"field": "LNAME", "message": "Please enter a value"}]


def test_required_field_checked_on_stored_data(emu: EmulatorHandle, api: httpx.Client) -> None:
    # A contact that came from elsewhere without LNAME cannot be updated without supplying it.
    emu.admin.add_member(STRICT, "ext@gmail.com", merge_fields={"FNAME": "E"})
    r = api.patch(f"{S}/{md5('ext@gmail.com')}", json={"merge_fields": {"FNAME": "F"}})
    assert problem(r)["errors"] == [{"field": "LNAME", "message": "Please enter a value"}]
    r = api.patch(f"{S}/{md5('ext@gmail.com')}", params={"skip_merge_validation": "True"},
                  json={"merge_fields": {"FNAME": "F"}})
    assert r.status_code == 200 and r.json()["merge_fields"]["FNAME"] == "F"


def test_skip_merge_validation_relaxes_required(api: httpx.Client) -> None:
    r = api.put(f"{S}/{md5('k@gmail.com')}", params={"skip_merge_validation": "true"},
                json={"email_address": "k@gmail.com", "status_if_new": "subscribed"})
    assert r.status_code == 200 and r.json()["merge_fields"]["LNAME"] == ""


@pytest.mark.parametrize("phone", ["404-555-1212", "(404) 555-1212", "4045551212",
                                   "+1 404 555 1212"])
def test_us_phone_accepted(api: httpx.Client, phone: str) -> None:
    r = put(api, "p@gmail.com", STRICT, merge_fields={"LNAME": "P", "PHONE": phone})
    assert r.status_code == 200 and r.json()["merge_fields"]["PHONE"] == phone


@pytest.mark.parametrize("phone", ["555-1212", "+44 20 7946 0958", "call me", "404-555-12120"])
def test_us_phone_rejected(api: httpx.Client, phone: str) -> None:
    r = put(api, "p@gmail.com", STRICT, merge_fields={"LNAME": "P", "PHONE": phone})
    body = problem(r)
    assert body["detail"] == "Your merge fields were invalid."
    assert body["errors"] == [{"field": "PHONE", "message": "Please enter a valid phone number"}]


def test_international_phone_stored_as_sent(api: httpx.Client) -> None:
    r = put(api, "p@gmail.com", merge_fields={"PHONE": "+44 20 7946 0958"})
    assert r.json()["merge_fields"]["PHONE"] == "+44 20 7946 0958"


def test_empty_string_clears_a_non_required_field(api: httpx.Client) -> None:
    put(api, "e@gmail.com", merge_fields={"FNAME": "E", "PHONE": "123"})
    r = put(api, "e@gmail.com", merge_fields={"FNAME": "", "PHONE": ""})
    assert r.json()["merge_fields"]["FNAME"] == "" and r.json()["merge_fields"]["PHONE"] == ""


@pytest.mark.parametrize("value", [["a"], True, None, {"x": 1}])
def test_wrong_type_gives_any_of(api: httpx.Client, value: object) -> None:
    r = put(api, "w@gmail.com", merge_fields={"FNAME": value})
    body = problem(r)
    assert body["title"] == "Invalid Resource"
    assert body["errors"] == [{"field": "merge_fields.FNAME",
                               "message": "Data did not match any of the schemas described in "
                                          "anyOf."}]


def test_numbers_are_accepted_for_text(api: httpx.Client) -> None:
    assert put(api, "n@gmail.com", merge_fields={"FNAME": 42}).json()["merge_fields"][
        "FNAME"] == "42"


def test_unknown_merge_keys_ignored(api: httpx.Client) -> None:
    r = put(api, "u@gmail.com", merge_fields={"FNAME": "U", "NOPE": "x", "fname": "lower"})
    assert r.status_code == 200
    assert r.json()["merge_fields"] == {"FNAME": "U", "LNAME": "", "PHONE": "", "ADDRESS": ""}


def test_address_must_be_complete(api: httpx.Client) -> None:
    r = put(api, "ad@gmail.com", merge_fields={"ADDRESS": {"addr1": "1 Main St"}})
    assert problem(r)["errors"] == [{"field": "ADDRESS",
                                     "message": "Please enter a complete address"}]
    full = {"addr1": "1 Main St", "city": "Atlanta", "state": "GA", "zip": "30301"}
    r = put(api, "ad@gmail.com", merge_fields={"ADDRESS": full})
    assert r.json()["merge_fields"]["ADDRESS"] == {**full, "addr2": "", "country": "US"}


def test_custom_merge_field_types(emu: EmulatorHandle, api: httpx.Client) -> None:
    emu.admin.create_account(access_token="t2", audiences=[{"id": "custom", "name": "C",
        "merge_fields": [{"tag": "AGE", "type": "number"},
                         {"tag": "PLAN", "type": "dropdown", "choices": ["free", "pro"]}]}])
    c = httpx.Client(base_url=emu.api_url, headers={"Authorization": "Bearer t2"})
    r = put(c, "c@gmail.com", "custom", merge_fields={"AGE": "old", "PLAN": "gold"})
    assert problem(r)["errors"] == [{"field": "AGE", "message": "Please enter a number"},
                                    {"field": "PLAN", "message": "Please choose a valid option"}]
    r = put(c, "c@gmail.com", "custom", merge_fields={"AGE": 30, "PLAN": "pro"})
    assert r.json()["merge_fields"] == {"AGE": 30, "PLAN": "pro"}
    assert PLAIN  # the default audience is untouched
