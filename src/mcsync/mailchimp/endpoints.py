"""Where a Mailchimp API call may go: built from a data center name of Mailchimp's form only.

A connection's `dc` (us1, us21...) is the host part of every API call
(`https://<dc>.api.mailchimp.com/3.0`) and the bearer token travels with each call, so a dc that
is anything else (`attacker.example/x?`) would send the user's token to another host. The form
is checked where a dc is stored (a CHECK constraint in sql/004, and `checked_dc` on the way in)
and again here, where every URL is built, so a row forged past the first still sends nothing.

The OAuth metadata's `api_endpoint` is not used for calls: the base comes from the checked dc
and MAILCHIMP_API_URL, and that derived base is what is stored (see mcsync.web.oauth)."""

from __future__ import annotations

import re

DC_FORM = re.compile(r"^[a-z]+[0-9]+$")


class InvalidDataCenter(ValueError):
    """A dc that is not of Mailchimp's form: no URL is built from it, no request is made."""


def checked_dc(dc: str) -> str:
    """`dc` if it has Mailchimp's form (letters then digits, e.g. us21), else InvalidDataCenter."""
    if not isinstance(dc, str) or not DC_FORM.fullmatch(dc):
        raise InvalidDataCenter(
            f"{dc!r} is not a Mailchimp data center (expected letters then digits, e.g. us21); "
            "refusing to build an API URL from it"
        )
    return dc


def api_base(template: str, dc: str) -> str:
    """The API base for `dc`: `template` (MAILCHIMP_API_URL) with `{dc}` filled in.

    The one place an account's URL is built (`ClientFactory`, `Settings.api_base`)."""
    return template.replace("{dc}", checked_dc(dc)).rstrip("/")
