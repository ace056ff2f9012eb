"""One error taxonomy for every Mailchimp answer.

Classification branches on the HTTP status first (Mailchimp's 429 and 403 bodies may be empty),
then on the problem+json ``title``/``detail``/``errors``:

* :class:`TransientError` - 429, 5xx, timeouts and network errors, a bodiless 403. Retry later.
* :class:`ConnectionLevelError` - 401, a 403 with a JSON body: the token is revoked or the
  account can't be used. Stop syncing the connection.
* :class:`ContactLevelError` - a 400 about one contact's data (fake address, forgotten address,
  compliance state, merge fields, email-change conflict, ...). Permanent for that contact,
  except kind ``signup_limited`` ("<email> has signed up to a lot of lists very recently"):
  a temporary, per-person refusal (ibericode/mailchimp-for-wordpress#771, #506); and kind
  ``cannot_archive``, the 405 Mailchimp answers to archiving a pending, cleaned or archived
  member (grouparoo/grouparoo plugins/@grouparoo/mailchimp/__tests__/fixtures/export/
  exportRecord.js): that member stays as it is.
* :class:`NotFoundError` - 404.
* :class:`RequestError` - any other 4xx: our own bug, permanent (a whole-batch 400 naming
  ``members.item:<n>`` fields too; :func:`failed_batch_items` says which members).

Nothing is required of the body: ``type`` is missing on some real answers (Member Exists,
Forgotten Email Not Subscribed, Member In Compliance State), ``errors`` on most, and 429/403
may have no body at all.

What each class means for the sync is decided once, by :func:`disposition`; the worker's
calls, its batch subscribe and its health probe all act on that answer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

import httpx

ContactErrorKind = Literal[
    "fake_email",
    "invalid_email",
    "forgotten",
    "compliance",
    "merge_fields",
    "already_in_list",
    "member_exists",
    "signup_limited",
    "cannot_archive",
    "invalid",
]

_SECRET = re.compile(r"(Bearer|OAuth|Basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)


@dataclass(frozen=True)
class FieldError:
    """One entry of a problem document's ``errors`` array."""

    field: str
    message: str


class MailchimpError(Exception):
    """Base class. ``str()`` is built from Mailchimp's own title and detail, never the token."""

    def __init__(
        self,
        title: str,
        detail: str = "",
        *,
        status: int | None = None,
        errors: list[FieldError] | None = None,
        request_id: str | None = None,
    ) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.errors: list[FieldError] = list(errors or [])
        self.request_id = request_id
        super().__init__(self._message())

    def _message(self) -> str:
        parts = [str(self.status) if self.status is not None else None, self.title]
        text = " ".join(p for p in parts if p)
        if self.detail and self.detail != self.title:
            text = f"{text}: {self.detail}"
        if self.errors:
            text += " [" + "; ".join(f"{e.field}: {e.message}" for e in self.errors) + "]"
        return _SECRET.sub(r"\1 [redacted]", text)

    def __str__(self) -> str:
        return self._message()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._message()!r})"


class TransientError(MailchimpError):
    """Try again later: 429, 5xx, timeouts, network errors, a bodiless 403."""

    def __init__(
        self,
        title: str,
        detail: str = "",
        *,
        throttled: bool = False,
        retry_after: float | None = None,
        **kwargs: Any,
    ) -> None:
        self.throttled = throttled
        self.retry_after = retry_after
        super().__init__(title, detail, **kwargs)


class ConnectionLevelError(MailchimpError):
    """The token is revoked or the account can't be used (401, 403 with a JSON body)."""


class ContactLevelError(MailchimpError):
    """A permanent problem with one contact's data; the rest of the sync goes on."""

    def __init__(
        self,
        title: str,
        detail: str = "",
        *,
        kind: ContactErrorKind = "invalid",
        field: str | None = None,
        reason: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.kind: ContactErrorKind = kind
        self.field = field
        self.reason = reason or detail or title
        super().__init__(title, detail, **kwargs)


class NotFoundError(MailchimpError):
    """404: the audience or member does not exist (permanently deleted members too)."""


class RequestError(MailchimpError):
    """Any other 4xx: the request itself is wrong (our bug). Permanent."""


class OAuthError(MailchimpError):
    """The OAuth dance failed (bad code, bad client, unreachable login server...)."""


Disposition = Literal["throttled", "transient", "connection", "postponed", "rejected"]


def disposition(error: MailchimpError) -> Disposition:
    """What a failed call means for the sync; every caller acts on this one answer.

    * ``"throttled"``: Mailchimp asks us to slow down (429, "too many" 5xx/403). Hold back the
      whole account for a while; nobody's attempts are counted.
    * ``"transient"``: any other try-again-later (5xx, timeouts, network, a bodiless 403).
      Retry the contact later; the failure counts toward pausing the connection.
    * ``"connection"``: the token is revoked or the account unusable (401, a 403 with a body).
      Stop the connection until the user reconnects.
    * ``"postponed"``: a temporary refusal about one person (``signup_limited``: "signed up
      to a lot of lists very recently", ibericode/mailchimp-for-wordpress#771). Try that contact
      again hours later; never recorded as a rejection, never counted toward pausing.
    * ``"rejected"``: Mailchimp will answer the same way again (a contact-level 400, a 404, a
      4xx we did not foresee). Record it against the contact; never block the queue on it.
    """
    if isinstance(error, TransientError):
        return "throttled" if error.throttled else "transient"
    if isinstance(error, ConnectionLevelError):
        return "connection"
    if isinstance(error, ContactLevelError) and error.kind == "signup_limited":
        return "postponed"
    return "rejected"


def call_outcome(error: MailchimpError | None) -> str:
    """The ``outcome`` of one call, as logs and metrics label it."""
    if error is None:
        return "ok"
    kind = disposition(error)
    if kind == "connection":
        return "connection_error"
    if kind == "rejected":
        return type(error).__name__
    return kind


def normalise_field(field: str | None) -> str | None:
    """``"merge_fields.PHONE"`` -> ``"PHONE"``, ``"email address"`` -> ``"email_address"``."""
    if field is None:
        return None
    name = field.strip()
    if not name:
        return None
    if name.lower().startswith("merge_fields."):
        name = name.split(".", 1)[1]
    if name.lower().replace(" ", "_") in {"email_address", "email"}:
        return "email_address"
    return name


_THROTTLE_WORDS = ("too many", "simultaneous connections")


def _is_throttle_text(*texts: str) -> bool:
    low = " ".join(texts).lower()
    return any(w in low for w in _THROTTLE_WORDS)


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None


def _problem(response: httpx.Response) -> dict[str, Any] | None:
    """The JSON problem document, or None when the body is empty or not JSON."""
    if not response.content or not response.content.strip():
        return None
    try:
        data = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _field_errors(doc: dict[str, Any]) -> list[FieldError]:
    out: list[FieldError] = []
    raw = doc.get("errors")
    if isinstance(raw, list):
        for item in raw:
            if isinstance(item, dict):
                out.append(
                    FieldError(
                        field=str(item.get("field") or ""), message=str(item.get("message") or "")
                    )
                )
    return out


_MERGE_TAG = re.compile(r"^[A-Z][A-Z0-9_]*$")


def field_category(field: str | None) -> Literal["merge", "email", "tags", "schema"] | None:
    """What a problem document's ``field`` names: a merge tag, the address, tags, or schema."""
    if field is None or not field.strip():
        return None
    raw = field.strip()
    if raw.lower().startswith("merge_fields") or _MERGE_TAG.match(raw):
        return "merge"
    norm = normalise_field(raw)
    if norm == "email_address":
        return "email"
    if raw.lower().startswith("tags"):
        return "tags"
    return "schema"


def classify_contact_message(
    text: str, *, field: str | None = None, error_code: str | None = None
) -> tuple[ContactErrorKind, str | None] | None:
    """Kind (and field) of a contact-level error judged from its text and field.

    None when the text and field say nothing about the contact's data (e.g. a schema field
    such as ``status``: that is our own bug, not the contact's).
    """
    low = text.lower()
    if "signed up to a lot of lists" in low:
        return "signup_limited", "email_address"
    if "permanently deleted" in low or "forgotten email" in low:
        return "forgotten", "email_address"
    if "compliance state" in low:
        return "compliance", "email_address"
    if "is already in this list" in low:
        return "already_in_list", "email_address"
    if (
        error_code == "ERROR_CONTACT_EXISTS"
        or "already a list member" in low
        or "member exists" in low
    ):
        return "member_exists", "email_address"
    if "looks fake or invalid" in low:
        return "fake_email", "email_address"
    if "valid email address" in low or "invalid email" in low:
        return "invalid_email", "email_address"
    category = field_category(field)
    if category == "merge":
        name = normalise_field(field)
        return "merge_fields", None if name == "merge_fields" else name
    if category == "email":
        return "invalid_email", "email_address"
    if category == "tags":
        return "invalid", "tags"
    if category is None and "merge field" in low:
        return "merge_fields", None
    return None


def _contact_error(
    title: str,
    detail: str,
    errors: list[FieldError],
    *,
    status: int,
    request_id: str | None,
) -> MailchimpError:
    """A 400: contact-level when it is about the contact's data, else our own RequestError."""
    common: dict[str, Any] = {"status": status, "errors": errors, "request_id": request_id}
    low_title = title.lower()
    reason = f"{title}: {detail}" if detail else title
    if errors:
        reason += " (" + "; ".join(f"{e.field}: {e.message}" for e in errors) + ")"

    def make(kind: ContactErrorKind, field: str | None) -> ContactLevelError:
        return ContactLevelError(title, detail, kind=kind, field=field, reason=reason, **common)

    if "forgotten email" in low_title:
        return make("forgotten", "email_address")
    if "compliance state" in low_title:
        return make("compliance", "email_address")
    if "member exists" in low_title:
        return make("member_exists", "email_address")
    # Field-level first: an email change into an existing address, bad merge fields...
    for e in errors:
        found = classify_contact_message(e.message, field=e.field)
        if found is not None:
            return make(*found)
    found = classify_contact_message(f"{title}: {detail}")
    if found is not None:
        if found[0] == "merge_fields" and found[1] is None and errors:
            return make("merge_fields", normalise_field(errors[0].field))
        return make(*found)
    if "invalid resource" in low_title and not errors:
        # A bare "Invalid Resource" whose detail we don't know: about this contact's data.
        return make("invalid", None)
    # Schema-level complaints (a bad status, count, JSON...) mean our request is wrong.
    return RequestError(title, detail, **common)


_BATCH_ITEM = re.compile(r"^members\.item:(\d+)(?:\.|$)")


def failed_batch_items(err: MailchimpError) -> list[int]:
    """Indexes of the members a whole-batch 400 names, in order, without repeats.

    One schema-invalid member fails a whole batch subscribe, naming it as
    ``members.item:<index>.<field>`` (brandonseydel/MailChimp.Net#567). Empty when the error
    names no batch member.
    """
    out: list[int] = []
    for e in err.errors:
        match = _BATCH_ITEM.match(e.field.strip())
        if match is not None and int(match.group(1)) not in out:
            out.append(int(match.group(1)))
    return out


def error_from_response(response: httpx.Response) -> MailchimpError:
    """Classify a non-2xx Mailchimp answer. Branches on the status code first."""
    status = response.status_code
    request_id = response.headers.get("X-Request-Id")
    doc = _problem(response)
    title = str((doc or {}).get("title") or response.reason_phrase or f"HTTP {status}")
    detail = str((doc or {}).get("detail") or "")
    errors = _field_errors(doc) if doc else []
    common: dict[str, Any] = {"status": status, "errors": errors, "request_id": request_id}

    if status == 429:
        return TransientError(
            title, detail, throttled=True, retry_after=_retry_after(response), **common
        )
    if status >= 500:
        return TransientError(
            title,
            detail,
            throttled=_is_throttle_text(title, detail),
            retry_after=_retry_after(response),
            **common,
        )
    if status == 401:
        return ConnectionLevelError(title, detail, **common)
    if status == 403:
        if doc is None:
            # Mailchimp's edge answers throttled bursts with a bare 403: not a verdict on the token.
            return TransientError(title, detail, retry_after=_retry_after(response), **common)
        if _is_throttle_text(title, detail):
            return TransientError(
                title, detail, throttled=True, retry_after=_retry_after(response), **common
            )
        return ConnectionLevelError(title, detail, **common)
    if status == 404:
        return NotFoundError(title, detail, **common)
    if status == 408:
        return TransientError(title, detail, **common)
    if status == 400:
        return _contact_error(title, detail, errors, status=status, request_id=request_id)
    if status == 405 and "cannot be removed" in detail.lower():
        return ContactLevelError(
            title,
            detail,
            kind="cannot_archive",
            reason=f"{title}: {detail}",
            **common,
        )
    return RequestError(title, detail, **common)
