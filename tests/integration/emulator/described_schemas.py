"""The answers' schemas, the project's own, written from the facts of Mailchimp's published API
description (the current OpenAPI 3.1 in mailchimp/fern-marketing-api-docs, and the Swagger of
version 3.0.55), with a small checker. Kept apart from the emulator on purpose: the emulator's
answers are held against this copy, not against its own idea of itself.

Only the documented departures (docs/emulator.md, "Departures from the published description")
are allowed: problem documents without `type` for three titles, and `""` for a date-time
Mailchimp has no value for (see EMPTY_DATE_TIMES).
"""

from __future__ import annotations

import re
from typing import Any

Schema = dict[str, Any]

# Date-times that real answers carry as "" while unset (grouparoo/grouparoo's recordings:
# plugins/@grouparoo/mailchimp/__tests__/fixtures/export/export-record.js for timestamp_signup,
# .../fixtures/integration/mailchimp-import.js for the list's campaign_last_sent and
# last_unsub_date; last_sub_date is the same kind of field).
EMPTY_DATE_TIMES = frozenset(
    {"timestamp_signup", "campaign_last_sent", "last_sub_date", "last_unsub_date"}
)
# Problem documents Mailchimp sends without `type` (recorded; see emulator/refusals.py).
UNTYPED_TITLES = frozenset(
    {"Member Exists", "Forgotten Email Not Subscribed", "Member In Compliance State"}
)

_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
WRITABLE = ["subscribed", "unsubscribed", "cleaned", "pending", "transactional"]


def s(**kw: Any) -> Schema:
    return {"type": "string", **kw}


def obj(props: dict[str, Schema], **kw: Any) -> Schema:
    return {"type": "object", "properties": props, **kw}


INT, NUM, BOOL, DATE_TIME = {"type": "integer"}, {"type": "number"}, {"type": "boolean"}, s(
    format="date-time"
)
LINKS: Schema = {"type": "array"}


def _member(statuses: list[str]) -> Schema:
    return obj(
        {
            "id": s(),
            "email_address": s(),
            "unique_email_id": s(),
            "contact_id": s(),
            "web_id": INT,
            "email_type": {},
            "status": s(enum=statuses),
            "unsubscribe_reason": s(),
            "consents_to_one_to_one_messaging": BOOL,
            "sms_phone_number": s(),
            "sms_subscription_status": s(
                enum=["subscribed", "unsubscribed", "nonsubscribed", "pending"]
            ),
            "sms_subscription_last_updated": s(),
            "merge_fields": {
                "type": ["object", "null"],
                "additionalProperties": {"type": ["object", "string", "number", "boolean"]},
            },
            "interests": {"type": "object", "additionalProperties": BOOL},
            "stats": obj({"avg_open_rate": NUM, "avg_click_rate": NUM}),
            "ip_signup": s(),
            "timestamp_signup": DATE_TIME,
            "ip_opt": s(),
            "timestamp_opt": DATE_TIME,
            "member_rating": INT,
            "last_changed": DATE_TIME,
            "language": s(),
            "vip": BOOL,
            "email_client": s(),
            "location": obj(
                {
                    "latitude": NUM,
                    "longitude": NUM,
                    "gmtoff": INT,
                    "dstoff": INT,
                    "country_code": s(),
                    "timezone": s(),
                    "region": s(),
                }
            ),
            "marketing_permissions": {
                "type": "array",
                "items": obj({"marketing_permission_id": s(), "enabled": BOOL, "text": s()}),
            },
            "source": s(),
            "tags_count": INT,
            "tags": {"type": "array", "items": obj({"id": INT, "name": s()})},
            "list_id": s(),
            "_links": LINKS,
        }
    )


MEMBER = _member([*WRITABLE, "archived"])  # ListsMembersMembers
BATCH_MEMBER = _member(WRITABLE)  # ListsNewMembers: no "archived"
MEMBERS = obj({"members": {"type": "array", "items": MEMBER}, "list_id": s(),
               "total_items": INT, "_links": LINKS})
BATCH = obj(
    {
        "new_members": {"type": "array", "items": BATCH_MEMBER},
        "updated_members": {"type": "array", "items": BATCH_MEMBER},
        "errors": {
            "type": "array",
            "items": obj(
                {
                    "email_address": s(),
                    "error": s(),
                    "error_code": s(enum=["ERROR_CONTACT_EXISTS", "ERROR_GENERIC"]),
                    "field": s(),
                    "field_message": s(),
                }
            ),
        },
        "total_created": INT,
        "total_updated": INT,
        "error_count": INT,
        "_links": LINKS,
    }
)
_STATS_INTS = ("member_count", "total_contacts", "unsubscribe_count", "cleaned_count",
               "member_count_since_send", "unsubscribe_count_since_send",
               "cleaned_count_since_send", "campaign_count", "merge_field_count")
_STATS_NUMS = ("avg_sub_rate", "avg_unsub_rate", "target_sub_rate", "open_rate", "click_rate")
LIST = obj(
    {
        "id": s(),
        "web_id": INT,
        "name": s(),
        "contact": obj({k: s() for k in ("company", "address1", "address2", "city", "state",
                                         "zip", "country", "phone")}),
        "permission_reminder": s(),
        "use_archive_bar": BOOL,
        "campaign_defaults": obj({k: s() for k in ("from_name", "from_email", "subject",
                                                   "language")}),
        "notify_on_subscribe": s(),
        "notify_on_unsubscribe": s(),
        "date_created": DATE_TIME,
        "list_rating": INT,
        "email_type_option": BOOL,
        "subscribe_url_short": s(),
        "subscribe_url_long": s(),
        "beamer_address": s(),
        "visibility": s(enum=["pub", "prv"]),
        "double_optin": BOOL,
        "has_welcome": BOOL,
        "marketing_permissions": BOOL,
        "modules": {"type": "array", "items": s()},
        "stats": obj(
            {
                **{k: INT for k in _STATS_INTS},
                **{k: NUM for k in _STATS_NUMS},
                "campaign_last_sent": DATE_TIME,
                "last_sub_date": DATE_TIME,
                "last_unsub_date": DATE_TIME,
            }
        ),
        "_links": LINKS,
    }
)
LISTS = obj(
    {
        "lists": {"type": "array", "items": LIST},
        "total_items": INT,
        "constraints": obj(
            {"may_create": BOOL, "max_instances": INT, "current_total_instances": INT},
            required=["may_create", "max_instances"],
        ),
        "_links": LINKS,
    },
    required=["lists"],
)
ROOT = obj(
    {
        **{k: s() for k in ("account_id", "login_id", "account_name", "email", "first_name",
                            "last_name", "username", "avatar_url", "role", "account_timezone",
                            "account_industry")},
        "member_since": DATE_TIME,
        "pricing_plan_type": s(enum=["monthly", "pay_as_you_go", "forever_free"]),
        "first_payment": DATE_TIME,
        "last_login": DATE_TIME,
        "contact": obj({k: s() for k in ("company", "addr1", "addr2", "city", "state", "zip",
                                         "country")}),
        "pro_enabled": BOOL,
        "total_subscribers": INT,
        "industry_stats": obj({"open_rate": NUM, "bounce_rate": NUM, "click_rate": NUM}),
        "_links": LINKS,
    }
)
PING = obj({"health_status": s()})
TAGS = obj(
    {
        "tags": {"type": "array", "items": obj({"id": INT, "name": s(),
                                                 "date_added": DATE_TIME})},
        "total_items": INT,
        "_links": LINKS,
    }
)
# AccountExports, the description's problem document: all five required.
PROBLEM = obj(
    {
        "type": s(),
        "title": s(),
        "status": INT,
        "detail": s(),
        "instance": s(),
        "errors": {"type": "array", "items": obj({"field": s(), "message": s()})},
    },
    required=["type", "title", "status", "detail", "instance"],
)

_TYPES = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "object": dict,
    "array": list,
    "null": type(None),
}


def _of(kind: str, value: Any) -> bool:
    if kind in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, _TYPES[kind])


def problems(schema: Schema, value: Any, path: str = "$") -> list[str]:
    """Where `value` breaks `schema` (type, enum, date-time format, required, nested)."""
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_of(k, value) for k in kinds):
            return [f"{path}: {type(value).__name__} is not {'/'.join(kinds)}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path}: {value!r} is not one of {schema['enum']}"]
    if schema.get("format") == "date-time" and not _DATE_TIME.match(value):
        if not (value == "" and path.rsplit(".", 1)[-1] in EMPTY_DATE_TIMES):
            return [f"{path}: {value!r} is not a date-time"]
    out: list[str] = []
    if isinstance(value, dict):
        required = set(schema.get("required", ()))
        if path == "$" and schema is PROBLEM and value.get("title") in UNTYPED_TITLES:
            required.discard("type")
        out += [f"{path}.{name}: required, missing" for name in sorted(required - set(value))]
        props = schema.get("properties", {})
        for name, item in value.items():
            sub = props.get(name, schema.get("additionalProperties"))
            if sub is not None:
                out += problems(sub, item, f"{path}.{name}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            out += problems(schema["items"], item, f"{path}[{i}]")
    return out
