"""What Mailchimp's published API description says each /3.0 request may carry.

The facts (types, enums, required fields, nullability) of the operations the emulator serves,
read from Mailchimp's own machine-readable description of the Marketing API: the Swagger of
version 3.0.55 (mailchimp/mailchimp-client-lib-codegen spec/marketing.json, archived by APIs.guru
in APIs-guru/openapi-directory under APIs/mailchimp.com/3.0.55/) and the current OpenAPI 3.1
(mailchimp/fern-marketing-api-docs, fern/apis/mailchimp-openapi/openapi.json). Where the two
differ the current one wins (e.g. batch members gained `status_if_new` and `tags`, and all their
fields are nullable). This is a table of facts, not a copy of the document; where the emulator
deliberately departs from it (a lenient behaviour recorded from real traffic) the waiver is named
beside the fact and listed in docs/emulator.md ("Departures from the published description").

`check_body` and `check_query` answer like Mailchimp's schema layer: every violation becomes one
`{field, message}` entry of a 400 Invalid Resource, the field in Mailchimp's dotted notation
(`members.item:0.status`, brandonseydel/MailChimp.Net#567).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ANY_OF, invalid

# Batch schema failures name the accepted values (brandonseydel/MailChimp.Net#567 shows the
# message's start, "Data presented is not one of the accepted values"; the list is ours).
NOT_ACCEPTED = "Data presented is not one of the accepted values: "
BLANK = "This value should not be blank."

WRITABLE = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional")
PATCH_WRITABLE = ("subscribed", "unsubscribed", "cleaned", "pending")  # no transactional
MEMBER_STATUSES = (*WRITABLE, "archived")
TAG_STATUSES = ("inactive", "active")


@dataclass(frozen=True)
class Prop:
    """One value's facts: its JSON type(s), enum, nullability, and what it holds."""

    kinds: tuple[str, ...]
    enum: tuple[str, ...] = ()
    nullable: bool = False
    timestamp: bool = False  # a date-time, or one of the description's other timestamp forms
    items: Prop | None = None  # arrays: each item
    props: Mapping[str, Prop] = field(default_factory=dict)  # objects: known properties
    values: Prop | None = None  # objects: every other property (additionalProperties)
    # Objects: the body is valid when ANY of these sets of names is all present (a plain
    # `required` list is one set; the description's oneOf/anyOf of `required` are several).
    required: tuple[tuple[str, ...], ...] = ()


def _s(**kw: Any) -> Prop:
    return Prop(("string",), **kw)


def _b(**kw: Any) -> Prop:
    return Prop(("boolean",), **kw)


def _n(**kw: Any) -> Prop:
    return Prop(("number",), **kw)


def _o(props: Mapping[str, Prop] | None = None, **kw: Any) -> Prop:
    return Prop(("object",), props=props or {}, **kw)


def _member_body(
    statuses: tuple[str, ...],
    *,
    nullable: bool = False,
    extra: Mapping[str, Prop] | None = None,
    required: tuple[tuple[str, ...], ...] = (),
) -> Prop:
    """A member's writable fields, as the member and batch operations describe them."""
    n = nullable
    props: dict[str, Prop] = {
        "email_address": _s(nullable=n),
        "email_type": _s(nullable=n),
        "status": _s(enum=statuses, nullable=n),
        # Values: object, string, number or boolean (the 3.1 description); the emulator is
        # stricter on booleans per merge-field type (validation.schema_type_ok).
        "merge_fields": _o(
            values=Prop(("object", "string", "number", "boolean")), nullable=True
        ),
        "interests": _o(values=_b(nullable=n), nullable=n),
        "language": _s(nullable=n),
        "vip": _b(nullable=n),
        "location": _o({"latitude": _n(nullable=n), "longitude": _n(nullable=n)}, nullable=n),
        "ip_signup": _s(nullable=n),
        "ip_opt": _s(nullable=n),
        "timestamp_signup": _s(timestamp=True, nullable=n),
        "timestamp_opt": _s(timestamp=True, nullable=n),
        **(extra or {}),
    }
    return _o(props, required=required)


_PERMISSIONS = Prop(("array",), items=_o({"marketing_permission_id": _s(), "enabled": _b()}))
_TAG_NAMES = Prop(("array",), items=_s())

# Request bodies, by operation. PUT's required fields are waived for an existing member (a
# listed departure: `check_body(..., waive_required=True)`); everything else always holds.
BODIES: dict[str, Prop] = {
    "batch_subscribe": _o(
        {
            "members": Prop(
                ("array",),
                items=_member_body(
                    WRITABLE,
                    nullable=True,
                    extra={
                        "status_if_new": _s(enum=WRITABLE, nullable=True),
                        "tags": Prop(("array",), items=_s(), nullable=True),
                    },
                    # anyOf: `status` or `status_if_new` (listed so `status` is the one named)
                    required=(("status_if_new",), ("status",)),
                ),
            ),
            "sync_tags": _b(nullable=True),
            "update_existing": _b(nullable=True),
        },
        required=(("members",),),
    ),
    "post_member": _member_body(
        WRITABLE,
        extra={"marketing_permissions": _PERMISSIONS, "tags": _TAG_NAMES},
        required=(("email_address", "status"),),
    ),
    # oneOf [email_address + status_if_new] | [email_address + status], read as anyOf: both
    # statuses at once are accepted by Mailchimp (a listed departure, see docs/emulator.md).
    "put_member": _member_body(
        WRITABLE,
        extra={
            "status_if_new": _s(enum=WRITABLE),
            "marketing_permissions": _PERMISSIONS,
        },
        required=(("email_address", "status_if_new"), ("email_address", "status")),
    ),
    "patch_member": _member_body(
        PATCH_WRITABLE, extra={"marketing_permissions": _PERMISSIONS}
    ),
    "post_tags": _o(
        {
            "tags": Prop(
                ("array",),
                items=_o({"name": _s(), "status": _s(enum=TAG_STATUSES)},
                         required=(("name", "status"),)),
            ),
            "is_syncing": _b(),
        },
        required=(("tags",),),
    ),
}

# Query parameters, by operation: "integer", "boolean", "string" or an enum. `fields` and
# `exclude_fields` (comma-separated strings) are accepted everywhere that returns a body.
_PAGING = {"count": "integer", "offset": "integer"}
_SORT_DIR = ("ASC", "DESC")
QUERIES: dict[str, dict[str, str | tuple[str, ...]]] = {
    "get_lists": {
        **_PAGING,
        "before_date_created": "string",
        "since_date_created": "string",
        "before_campaign_last_sent": "string",
        "since_campaign_last_sent": "string",
        "email": "string",
        "sort_field": ("date_created",),
        "sort_dir": _SORT_DIR,
        "has_ecommerce_store": "boolean",
        "include_total_contacts": "boolean",
    },
    "get_list": {"include_total_contacts": "boolean"},
    "get_members": {
        **_PAGING,
        "email_type": "string",
        "status": MEMBER_STATUSES,
        "since_timestamp_opt": "string",
        "before_timestamp_opt": "string",
        "since_last_changed": "string",
        "before_last_changed": "string",
        "unique_email_id": "string",
        "vip_only": "boolean",
        "interest_category_id": "string",
        "interest_ids": "string",
        "interest_match": ("any", "all", "none"),
        "sort_field": ("timestamp_opt", "timestamp_signup", "last_changed"),
        "sort_dir": _SORT_DIR,
        "since_last_campaign": "boolean",
        "unsubscribed_since": "string",
    },
    "get_tags": dict(_PAGING),
    "batch_subscribe": {"skip_merge_validation": "boolean", "skip_duplicate_check": "boolean"},
    "post_member": {"skip_merge_validation": "boolean"},
    "put_member": {"skip_merge_validation": "boolean"},
    "patch_member": {"skip_merge_validation": "boolean"},
}

_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
# The 3.1 description's other accepted timestamp forms (timestamp_signup / timestamp_opt).
_TIMESTAMP_FORMS = [
    _DATE_TIME,
    re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2})?$"),
    re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?[+-]\d{4}$"),
    re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} [A-Z][A-Z0-9+\-]{1,4}$"),
]
_INTEGER = re.compile(r"^[+-]?\d+$")


# json_type's answer for the exact types a JSON body decodes to (subclasses take the long way).
_JSON_TYPES: dict[type, str] = {
    type(None): "NULL",
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}


def json_type(value: Any) -> str:
    """The JSON type name as Mailchimp's schema messages spell it ("... NULL found instead")."""
    known = _JSON_TYPES.get(type(value))
    if known is not None:
        return known
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _is(kind: str, value: Any) -> bool:
    found = json_type(value)
    return found == kind or (kind == "number" and found == "integer")


def _at(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _null(path: str, prop: Prop | None) -> dict[str, str]:
    """A required value that is absent or null."""
    if path.rsplit(".", 1)[-1] == "email_address":
        return {"field": path, "message": BLANK}
    if prop is not None and len(prop.kinds) > 1:
        return {"field": path, "message": ANY_OF}
    wanted = "enum" if prop is not None and prop.enum else (prop.kinds[0] if prop else "value")
    return {"field": path, "message": f"Schema describes {wanted}, NULL found instead"}


def violations(
    prop: Prop, value: Any, path: str = "", *, waive_required: bool = False
) -> list[dict[str, str]]:
    """Every way `value` breaks `prop`, as Mailchimp's `errors[]` entries (empty: valid)."""
    if value is None:
        return [] if prop.nullable else [_null(path, prop)]
    found = json_type(value)
    # = any(_is(kind, value) for kind in prop.kinds), with the value's type read once
    if found not in prop.kinds and not (found == "integer" and "number" in prop.kinds):
        if len(prop.kinds) > 1:
            return [{"field": path, "message": ANY_OF}]
        return [{"field": path, "message": f"Schema describes {prop.kinds[0]}, {found} found "
                 "instead"}]
    if prop.enum and value not in prop.enum:
        return [{"field": path, "message": NOT_ACCEPTED + ", ".join(prop.enum)}]
    if prop.timestamp and not any(p.match(value) for p in _TIMESTAMP_FORMS):
        return [{"field": path, "message": ANY_OF}]
    if found != "array" and found != "object":
        return []  # a valid text, number or boolean holds nothing more to check
    out: list[dict[str, str]] = []
    if isinstance(value, list) and prop.items is not None:
        for i, item in enumerate(value):
            out += violations(prop.items, item, _at(path, f"item:{i}"))
    if isinstance(value, dict) and prop.kinds == ("object",):
        for name, item in value.items():
            sub = prop.props.get(name, prop.values)
            if sub is not None:
                out += violations(sub, item, _at(path, name))
        if prop.required and not waive_required:
            out += _required(prop, value, path, out)
    return out


def _required(
    prop: Prop, value: dict[str, Any], path: str, found: list[dict[str, str]]
) -> list[dict[str, str]]:
    """The missing names when no alternative of `prop.required` is complete: those of the
    alternative closest to complete (ties: the one listed last), each named once."""
    given = {k for k, v in value.items() if v is not None}
    lacking = [[n for n in names if n not in given] for names in prop.required]
    if any(not names for names in lacking):
        return []
    closest = min(reversed(lacking), key=len)
    named = {e["field"] for e in found}
    return [_null(_at(path, n), prop.props.get(n)) for n in closest if _at(path, n) not in named]


def check_body(op: str, body: Any, *, waive_required: bool = False) -> None:
    """Raise Mailchimp's 400 Invalid Resource when `body` breaks the description of `op`."""
    prop = BODIES.get(op)
    if prop is None or not isinstance(body, dict):
        return  # no body described, or not an object (the rules answer that one)
    errors = violations(prop, body, waive_required=waive_required)
    if errors:
        raise invalid(errors)


def check_query(op: str, query: Mapping[str, str]) -> None:
    """Raise 400 Invalid Resource for a query parameter of the wrong type or outside its enum.

    Query booleans are never refused: any value but true/1 reads as false (Mailchimp's API
    changelog, 2021-03-02). Unknown parameters are ignored, as Mailchimp ignores them.
    """
    described = QUERIES.get(op, {})
    errors: list[dict[str, str]] = []
    for name, value in query.items():
        kind = described.get(name)
        if kind == "integer" and not _INTEGER.match(value.strip()):
            errors.append({"field": name, "message": "Schema describes integer, string found "
                           "instead"})
        elif isinstance(kind, tuple) and value not in kind:
            errors.append({"field": name, "message": NOT_ACCEPTED + ", ".join(kind)})
    if errors:
        raise invalid(errors)
