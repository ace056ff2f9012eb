"""Mailchimp's error model: problem+json bodies, titles, and the X-Trigger-Error names."""

from __future__ import annotations

import json
import uuid
from typing import Any

from starlette.responses import Response

ERROR_TYPE = "https://mailchimp.com/developer/marketing/docs/errors/"
PROBLEM_JSON = "application/problem+json; charset=utf-8"
VALIDATION_DETAIL = (
    "The resource submitted could not be validated. For field-specific details, "
    "see the 'errors' array."
)
MERGE_DETAIL = "Your merge fields were invalid."
ANY_OF = "Data did not match any of the schemas described in anyOf."

# Mailchimp's error glossary, by status: title -> detail. A status's first title is what a fault
# given only that status answers with.
GLOSSARY: dict[int, dict[str, str]] = {
    400: {
        "Bad Request": "Your request could not be processed.",
        "Invalid Action": "The action requested was not valid for this resource.",
        "Invalid Resource": VALIDATION_DETAIL,
        "JSON Parse Exception": "We encountered an unspecified JSON parsing error.",
    },
    401: {
        "API Key Missing": "Your request did not include an API key.",
        "API Key Invalid": (
            "Your API key may be invalid, or you've attempted to access the wrong datacenter."
        ),
    },
    403: {
        "Forbidden": "You don't have permission to access this resource.",
        "User Disabled": "This account has been disabled.",
        "Wrong Datacenter": "The API key provided is linked to a different datacenter.",
    },
    404: {"Resource Not Found": "The requested resource could not be found."},
    405: {"Method Not Allowed": "The requested method and resource are not compatible."},
    414: {"Resource Nesting Too Deep": "The requested resource was nested too deeply."},
    422: {
        "Invalid Method Override": "You can only use the X-HTTP-Method-Override header with POST.",
        "Requested Fields Invalid": "The fields requested from this resource are invalid.",
    },
    429: {"Too Many Requests": "You have exceeded the limit of 10 simultaneous connections."},
    500: {
        "Internal Server Error": (
            "A deep, internal error has occurred during the processing of your request."
        )
    },
    503: {"Compliance Related": "This method has been disabled."},
}


def _name(title: str) -> str:
    """An error's name (X-Trigger-Error, and the glossary's own): its title without spaces, but
    for one."""
    return "JSONParseError" if title == "JSON Parse Exception" else title.replace(" ", "")


# X-Trigger-Error name -> (status, title, detail).
TRIGGERS: dict[str, tuple[int, str, str]] = {
    _name(title): (status, title, detail)
    for status, errors in GLOSSARY.items()
    for title, detail in errors.items()
}
# Status -> name, so a fault given only a status gets a realistic title and detail.
_BY_STATUS: dict[int, str] = {
    status: _name(next(iter(errors))) for status, errors in GLOSSARY.items()
}
_EXTRA: dict[int, tuple[str, str]] = {
    502: ("Bad Gateway", "The server received an invalid response from an upstream server."),
    503: ("Service Unavailable", "The service is temporarily unavailable."),
    504: ("Gateway Timeout", "The request timed out."),
}


class ApiError(Exception):
    """An error Mailchimp would answer with; raised by the rules, rendered by the API layer.

    `typed=False` leaves `type` out of the body, as real Mailchimp does for some titles (see
    refusals.py: Member Exists, Forgotten Email Not Subscribed, Member In Compliance State).
    `headers` are added to the response (e.g. the `Allow` header of a 405).
    """

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        errors: list[dict[str, str]] | None = None,
        *,
        typed: bool = True,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors
        self.typed = typed
        self.headers = dict(headers or {})


def glossary_error(name: str) -> ApiError:
    """The glossary's error of that name (a KeyError for a name it does not have)."""
    return ApiError(*TRIGGERS[name])


def from_trigger(name: str) -> ApiError | None:
    """The error an X-Trigger-Error header names, if the glossary has it."""
    return glossary_error(name) if name in TRIGGERS else None


def for_status(status: int) -> ApiError:
    name = _BY_STATUS.get(status)
    if name is not None and status not in (503,):
        return glossary_error(name)
    title, detail = _EXTRA.get(status, ("Error", "An error occurred."))
    return ApiError(status, title, detail)


def not_found() -> ApiError:
    return glossary_error("ResourceNotFound")


def invalid(errors: list[dict[str, str]], detail: str = VALIDATION_DETAIL) -> ApiError:
    return ApiError(400, "Invalid Resource", detail, errors)


def new_request_id() -> str:
    return str(uuid.uuid4())


def problem_response(err: ApiError, instance: str, *, bodiless: bool = False) -> Response:
    """Render like Mailchimp: problem+json, X-Request-Id; throttling may come with no body."""
    headers = {**err.headers, "X-Request-Id": instance}
    if bodiless:
        return Response(b"", status_code=err.status, headers=headers)
    body: dict[str, Any] = {"type": ERROR_TYPE} if err.typed else {}
    body.update({"title": err.title, "status": err.status, "detail": err.detail})
    body["instance"] = instance
    if err.errors is not None:
        body["errors"] = err.errors
    headers["Link"] = (
        '<https://us1.api.mailchimp.com/schema/3.0/ProblemDetailDocument.json>; rel="describedBy"'
    )
    return Response(
        json.dumps(body), status_code=err.status, headers=headers, media_type=PROBLEM_JSON
    )
