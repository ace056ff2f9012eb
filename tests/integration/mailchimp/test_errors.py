"""Classification of Mailchimp answers into the error taxonomy (no network)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from mcsync.mailchimp import (
    BatchError,
    ConnectionLevelError,
    ContactLevelError,
    NotFoundError,
    RequestError,
    TransientError,
    classify_batch_error,
    error_from_response,
)
from mcsync.mailchimp.errors import call_outcome, disposition

PROBLEM = "application/problem+json; charset=utf-8"


def resp(status: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    content = (
        b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    )
    h = {"Content-Type": PROBLEM, "X-Request-Id": "req-1", **(headers or {})}
    return httpx.Response(status, content=content, headers=h)


def problem(status: int, title: str, detail: str = "", errors: Any = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": "x",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": "",
    }
    if errors is not None:
        doc["errors"] = errors
    return doc


def test_bodiless_429_is_throttled_transient_with_retry_after() -> None:
    err = error_from_response(resp(429, headers={"Retry-After": "3"}))
    assert isinstance(err, TransientError)
    assert err.throttled and err.retry_after == 3.0 and err.status == 429
    assert err.request_id == "req-1"


def test_5xx_html_and_timeouts_are_transient() -> None:
    err = error_from_response(httpx.Response(502, content=b"<html>bad gateway</html>"))
    assert isinstance(err, TransientError) and not err.throttled


def test_403_bodiless_transient_but_with_body_connection_level() -> None:
    assert isinstance(error_from_response(resp(403)), TransientError)
    err = error_from_response(resp(403, problem(403, "User Disabled", "This account is disabled")))
    assert isinstance(err, ConnectionLevelError)


def test_401_connection_level_and_404_not_found_and_other_4xx_request() -> None:
    assert isinstance(
        error_from_response(resp(401, problem(401, "API Key Invalid"))), ConnectionLevelError
    )
    assert isinstance(
        error_from_response(resp(404, problem(404, "Resource Not Found"))), NotFoundError
    )
    assert isinstance(
        error_from_response(resp(405, problem(405, "Method Not Allowed"))), RequestError
    )
    assert isinstance(
        error_from_response(resp(400, problem(400, "JSON Parse Exception"))), RequestError
    )


@pytest.mark.parametrize(
    ("doc", "kind", "field"),
    [
        (
            problem(400, "Forgotten Email Not Subscribed", "a@b.co was permanently deleted"),
            "forgotten",
            "email_address",
        ),
        (
            problem(400, "Member In Compliance State", "a@b.co is in a compliance state"),
            "compliance",
            "email_address",
        ),
        (
            problem(400, "Member Exists", "a@b.co is already a list member."),
            "member_exists",
            "email_address",
        ),
        (
            problem(
                400,
                "Invalid Resource",
                "a@b.co looks fake or invalid, please enter a real email address.",
            ),
            "fake_email",
            "email_address",
        ),
        (
            problem(400, "Invalid Resource", "Please provide a valid email address."),
            "invalid_email",
            "email_address",
        ),
        (
            problem(
                400,
                "Invalid Resource",
                "Your merge fields were invalid.",
                [{"field": "LNAME", "message": "Please enter a value"}],
            ),
            "merge_fields",
            "LNAME",
        ),
        (
            problem(
                400,
                "Invalid Resource",
                "Your merge fields were invalid.",
                [{"field": "merge_fields.PHONE", "message": "Please enter a valid phone number"}],
            ),
            "merge_fields",
            "PHONE",
        ),
        (
            problem(
                400,
                "Invalid Resource",
                "The resource submitted could not be validated.",
                [
                    {
                        "field": "email address",
                        "message": '"n@b.co" is already in this list with a status of "Subscribed".',  # noqa: E501
                    }
                ],
            ),
            "already_in_list",
            "email_address",
        ),
        (
            problem(
                400, "Invalid Resource", "a@b.co has signed up to a lot of lists very recently"
            ),
            "signup_limited",
            "email_address",
        ),
    ],
)
def test_contact_level_kinds(doc: dict[str, Any], kind: str, field: str | None) -> None:
    err = error_from_response(resp(400, doc))
    assert isinstance(err, ContactLevelError)
    assert (err.kind, err.field) == (kind, field)
    assert doc["title"] in err.reason


def test_str_never_contains_a_token() -> None:
    err = error_from_response(
        resp(401, problem(401, "API Key Invalid", "Bearer abc123def was rejected"))
    )
    assert "abc123def" not in str(err) and "abc123def" not in repr(err)


@pytest.mark.parametrize(
    ("err", "kind", "field"),
    [
        (
            BatchError(
                email_address="a@b.co",
                error="a@b.co is already a list member, do you want to update?",
                error_code="ERROR_CONTACT_EXISTS",
            ),
            "member_exists",
            "email_address",
        ),
        (
            BatchError(
                email_address="a@b.co",
                error="a@b.co looks fake or invalid, please enter a real email address.",
                error_code="ERROR_GENERIC",
            ),
            "fake_email",
            "email_address",
        ),
        (
            BatchError(
                email_address="a@b.co",
                error="Your merge fields were invalid.",
                error_code="ERROR_GENERIC",
                field="LNAME",
                field_message="Please enter a value",
            ),
            "merge_fields",
            "LNAME",
        ),
        (
            BatchError(
                email_address="a@b.co",
                error="a@b.co was permanently deleted and cannot be re-imported.",
                error_code="ERROR_GENERIC",
            ),
            "forgotten",
            "email_address",
        ),
        (
            BatchError(
                email_address="x",
                error="Please provide a valid email address.",
                error_code="ERROR_GENERIC",
            ),
            "invalid_email",
            "email_address",
        ),
    ],
)
def test_batch_errors_classified(err: BatchError, kind: str, field: str | None) -> None:
    c = classify_batch_error(err)
    assert (c.kind, c.field) == (kind, field)
    assert c.reason


def test_schema_complaints_are_our_bug_not_the_contacts() -> None:
    doc = problem(
        400,
        "Invalid Resource",
        "The resource submitted could not be validated.",
        [{"field": "status", "message": "Value must be one of: subscribed, pending"}],
    )
    assert isinstance(error_from_response(resp(400, doc)), RequestError)
    doc = problem(
        400,
        "Invalid Resource",
        "The resource submitted could not be validated.",
        [{"field": "merge_fields.FNAME", "message": "Data did not match any of the schemas"}],
    )
    err = error_from_response(resp(400, doc))
    assert isinstance(err, ContactLevelError) and (err.kind, err.field) == ("merge_fields", "FNAME")
    doc = problem(400, "Invalid Resource", "x", [{"field": "tags.name", "message": "Too long"}])
    err = error_from_response(resp(400, doc))
    assert isinstance(err, ContactLevelError) and err.kind == "invalid"


# -- what each error means: decided once ---------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "expected", "label"),
    [
        (resp(429, problem(429, "Too Many Requests")), "throttled", "throttled"),
        (resp(503, b"", {"Content-Type": "text/html"}), "transient", "transient"),
        (resp(403, b""), "transient", "transient"),  # a bare 403: the edge, not the token
        (resp(401, problem(401, "API Key Invalid")), "connection", "connection_error"),
        (resp(403, problem(403, "User Disabled")), "connection", "connection_error"),
        (
            resp(400, problem(400, "Forgotten Email Not Subscribed", "permanently deleted")),
            "rejected",
            "ContactLevelError",
        ),
        (resp(404, problem(404, "Resource Not Found")), "rejected", "NotFoundError"),
        (
            resp(
                400,
                problem(
                    400,
                    "Invalid Resource",
                    "a@b.co has signed up to a lot of lists very "
                    "recently; we're not allowing more signups for now",
                ),
            ),
            "postponed",
            "postponed",
        ),
        (
            resp(405, problem(405, "Method Not Allowed", "This list member cannot be removed.")),
            "rejected",
            "ContactLevelError",
        ),
        (resp(405, problem(405, "Method Not Allowed")), "rejected", "RequestError"),
    ],
)
def test_each_error_has_one_disposition_and_one_label(
    response: httpx.Response, expected: str, label: str
) -> None:
    error = error_from_response(response)
    assert disposition(error) == expected
    assert call_outcome(error) == label


def test_a_call_without_error_is_ok() -> None:
    assert call_outcome(None) == "ok"
