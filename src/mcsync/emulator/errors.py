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

# X-Trigger-Error name -> (status, title, detail); names from Mailchimp's old error glossary.
TRIGGERS: dict[str, tuple[int, str, str]] = {
    "BadRequest": (400, "Bad Request", "Your request could not be processed."),
    "InvalidAction": (
        400,
        "Invalid Action",
        "The action requested was not valid for this resource.",
    ),
    "InvalidResource": (400, "Invalid Resource", VALIDATION_DETAIL),
    "JSONParseError": (
        400,
        "JSON Parse Exception",
        "We encountered an unspecified JSON parsing error.",
    ),
    "APIKeyMissing": (401, "API Key Missing", "Your request did not include an API key."),
    "APIKeyInvalid": (
        401,
        "API Key Invalid",
        "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
    ),
    "Forbidden": (403, "Forbidden", "You don't have permission to access this resource."),
    "UserDisabled": (403, "User Disabled", "This account has been disabled."),
    "WrongDatacenter": (
        403,
        "Wrong Datacenter",
        "The API key provided is linked to a different datacenter.",
    ),
    "ResourceNotFound": (404, "Resource Not Found", "The requested resource could not be found."),
    "MethodNotAllowed": (
        405,
        "Method Not Allowed",
        "The requested method and resource are not compatible.",
    ),
    "ResourceNestingTooDeep": (
        414,
        "Resource Nesting Too Deep",
        "The requested resource was nested too deeply.",
    ),
    "InvalidMethodOverride": (
        422,
        "Invalid Method Override",
        "You can only use the X-HTTP-Method-Override header with POST.",
    ),
    "RequestedFieldsInvalid": (
        422,
        "Requested Fields Invalid",
        "The fields requested from this resource are invalid.",
    ),
    "TooManyRequests": (
        429,
        "Too Many Requests",
        "You have exceeded the limit of 10 simultaneous connections.",
    ),
    "InternalServerError": (
        500,
        "Internal Server Error",
        "A deep, internal error has occurred during the processing of your request.",
    ),
    "ComplianceRelated": (503, "Compliance Related", "This method has been disabled."),
}

# Status -> name, so a fault given only a status gets a realistic title and detail.
_BY_STATUS: dict[int, str] = {}
for _name, (_status, _t, _d) in TRIGGERS.items():
    _BY_STATUS.setdefault(_status, _name)
_EXTRA: dict[int, tuple[str, str]] = {
    502: ("Bad Gateway", "The server received an invalid response from an upstream server."),
    503: ("Service Unavailable", "The service is temporarily unavailable."),
    504: ("Gateway Timeout", "The request timed out."),
}


class ApiError(Exception):
    """An error Mailchimp would answer with; raised by the rules, rendered by the API layer.

    `typed=False` leaves `type` out of the body, as real Mailchimp does for some titles (see
    rules.py: Member Exists, Forgotten Email Not Subscribed, Member In Compliance State).
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


def from_trigger(name: str) -> ApiError | None:
    spec = TRIGGERS.get(name)
    return ApiError(*spec) if spec else None


def for_status(status: int) -> ApiError:
    name = _BY_STATUS.get(status)
    if name is not None and status not in (503,):
        return ApiError(*TRIGGERS[name])
    title, detail = _EXTRA.get(status, ("Error", "An error occurred."))
    return ApiError(status, title, detail)


def not_found() -> ApiError:
    return ApiError(*TRIGGERS["ResourceNotFound"])


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
