"""Field-level checks Mailchimp applies: email addresses and merge fields.

Where Mailchimp's behaviour is unverified, the strict side is implemented; the choices are listed
in docs/emulator.md ("Choices where Mailchimp's behaviour is unverified").
"""

from __future__ import annotations

import re
from typing import Any

from .errors import ANY_OF, MERGE_DETAIL, ApiError, invalid
from .state import Audience, MergeField

_EMAIL = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
# Our definition of "looks fake": reserved/test domains and throwaway local parts.
FAKE_DOMAINS = frozenset(
    {
        "example.com",
        "example.org",
        "example.net",
        "test.com",
        "test.org",
        "fake.com",
        "email.test",
        "mailinator.com",
        "domain.com",
        "sample.com",
    }
)
FAKE_TLDS = frozenset({"test", "example", "invalid", "localhost", "local"})
FAKE_LOCAL_PARTS = frozenset(
    {
        "test",
        "fake",
        "asdf",
        "qwerty",
        "sample",
        "noemail",
        "nobody",
        "null",
        "none",
    }
)
_US_PHONE = re.compile(r"^(\+?1[\s.-]?)?(\(\d{3}\)\s?|\d{3}[\s.-]?)\d{3}[\s.-]?\d{4}$")
_DATE = [
    re.compile(p)
    for p in (
        r"^\d{4}-\d{2}-\d{2}$",
        r"^\d{4}/\d{2}/\d{2}$",
        r"^\d{2}-\d{2}-\d{4}$",
        r"^\d{2}/\d{2}/\d{4}$",
    )
]
_BIRTHDAY = re.compile(r"^(0[1-9]|1[0-2])/(0[1-9]|[12]\d|3[01])$")
_ZIP = re.compile(r"^\d{5}$")
_URL = re.compile(r"^https?://[^\s/$.?#].[^\s]*$", re.IGNORECASE)
ADDRESS_PARTS = ("addr1", "addr2", "city", "state", "zip", "country")
ADDRESS_REQUIRED = ("addr1", "city", "state", "zip")


def email_problem(email: str) -> str | None:
    """None if acceptable, else Mailchimp's message for this address."""
    if not _EMAIL.match(email) or len(email) > 254:
        return "Please provide a valid email address."
    local, domain = email.lower().rsplit("@", 1)
    if (
        domain in FAKE_DOMAINS
        or domain.rsplit(".", 1)[-1] in FAKE_TLDS
        or local in FAKE_LOCAL_PARTS
    ):
        return f"{email} looks fake or invalid, please enter a real email address."
    return None


def check_email(email: Any) -> str:
    if not isinstance(email, str) or not email:
        raise invalid([{"field": "email_address", "message": "This value should not be blank."}])
    problem = email_problem(email)
    if problem is not None:
        raise ApiError(400, "Invalid Resource", problem)
    return email


def is_empty(value: Any) -> bool:
    return (
        value is None
        or value == ""
        or (isinstance(value, dict) and not any(str(v).strip() for v in value.values()))
    )


def _normalize(mf: MergeField, value: Any, phone_format: str) -> tuple[Any, str | None]:
    """(value to store, error message or None) for one merge field."""
    if value == "":
        return "", None  # "" clears a field; required-ness is checked afterwards
    if mf.type == "address":
        if isinstance(value, str):  # Mailchimp's double-space-separated string form
            value = dict(zip(ADDRESS_PARTS, (p.strip() for p in value.split("  ")), strict=False))
        clean = {k: str(value.get(k) or "") for k in ADDRESS_PARTS}
        if any(not clean[k] for k in ADDRESS_REQUIRED):
            return value, "Please enter a complete address"
        if not clean["country"]:
            clean["country"] = "US"
        return clean, None
    text = str(value) if not isinstance(value, float) or not value.is_integer() else str(int(value))
    if mf.type == "number":
        try:
            float(text)
        except ValueError:
            return value, "Please enter a number"
        return value, None
    if mf.type == "phone" and phone_format == "US" and not _US_PHONE.match(text.strip()):
        return value, "Please enter a valid phone number"
    if mf.type == "date" and not any(p.match(text) for p in _DATE):
        return value, "Please enter a valid date"
    if mf.type == "birthday" and not _BIRTHDAY.match(text):
        return value, "Please enter a valid date"
    if mf.type == "zip" and not _ZIP.match(text):
        return value, "Please enter a valid zip code (5 digits)"
    if mf.type in ("dropdown", "radio") and mf.choices and text not in mf.choices:
        return value, "Please choose a valid option"
    if mf.type in ("url", "imageurl") and not _URL.match(text):
        return value, "Please enter a valid URL"
    if text.isascii() and len(text) <= 255:
        return text, None  # a byte a character: nothing to cut
    return text.encode()[:255].decode(errors="ignore"), None


def schema_type_ok(mf: MergeField, value: Any) -> bool:
    """The JSON type the schema allows for a merge value: string or number (an object for an
    address). `null`, booleans and arrays fail the schema itself, before any field rule."""
    if isinstance(value, dict):
        return mf.type == "address"
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def merge_fields(
    audience: Audience, current: dict[str, Any], given: Any, *, skip_required: bool
) -> dict[str, Any]:
    """The member's merge fields after applying `given`, or ApiError like Mailchimp's.

    Unknown keys are dropped (Mailchimp ignores them); tags are matched exactly (case-sensitive).
    Required fields are checked on the merged result, so an update fails if the stored member
    already lacks one (as reported for PATCH and PUT).
    """
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise invalid([{"field": "merge_fields", "message": ANY_OF}])
    type_errors = [
        {"field": f"merge_fields.{k}", "message": ANY_OF}
        for k, v in given.items()
        if k in audience.merge_fields and not schema_type_ok(audience.merge_fields[k], v)
    ]
    if type_errors:
        raise invalid(type_errors)
    result = dict(current)
    errors: list[dict[str, str]] = []
    for tag, value in given.items():
        mf = audience.merge_fields.get(tag)
        if mf is None:
            continue
        stored, problem = _normalize(mf, value, audience.phone_format)
        if problem:
            errors.append({"field": tag, "message": problem})
        else:
            result[tag] = stored
    if not skip_required:
        for tag, mf in audience.merge_fields.items():
            if (
                mf.required
                and is_empty(result.get(tag))
                and not any(e["field"] == tag for e in errors)
            ):
                errors.append({"field": tag, "message": "Please enter a value"})
    if errors:
        raise invalid(errors, MERGE_DETAIL)
    for tag in audience.merge_fields:
        result.setdefault(tag, "")
    return result
