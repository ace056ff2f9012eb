"""JSON shapes of Mailchimp resources, and the `fields` / `exclude_fields` projection."""

from __future__ import annotations

from typing import Any

from .errors import ApiError
from .state import Account, Audience, Member, iso_of

MAX_EMBEDDED_TAGS = 50


def member_json(audience: Audience, m: Member) -> dict[str, Any]:
    tags = [{"id": t.id, "name": t.name} for t in audience.member_tags(m)]
    fname = str(m.merge_fields.get("FNAME") or "")
    lname = str(m.merge_fields.get("LNAME") or "")
    body: dict[str, Any] = {
        "id": m.id,
        "email_address": m.email_address,
        "unique_email_id": m.unique_email_id,
        "contact_id": m.contact_id,
        "full_name": f"{fname} {lname}".strip(),
        "web_id": m.web_id,
        "email_type": m.email_type,
        "status": m.status,
        "consents_to_one_to_one_messaging": True,
        # No `sms_subscription_status`: the emulator's members have no SMS subscription, the
        # description's enum (subscribed, unsubscribed, nonsubscribed, pending) has no value
        # for that, and no recording shows what Mailchimp sends then (it is not required).
        "sms_phone_number": "",
        "sms_subscription_last_updated": "",
        "merge_fields": dict(m.merge_fields),
        "interests": dict(m.interests),
        "stats": {"avg_open_rate": 0, "avg_click_rate": 0},
        "ip_signup": m.ip_signup,
        "timestamp_signup": m.timestamp_signup,
        "ip_opt": m.ip_opt,
        "timestamp_opt": m.timestamp_opt,
        "member_rating": 2,
        "last_changed": iso_of(m.last_changed_at),
        "language": m.language,
        "vip": m.vip,
        "email_client": "",
        "location": {
            "latitude": 0,
            "longitude": 0,
            "gmtoff": 0,
            "dstoff": 0,
            "country_code": "",
            "timezone": "",
            "region": "",
        },
        "marketing_permissions": [],
        "source": m.source,
        "tags_count": len(tags),
        "tags": tags[:MAX_EMBEDDED_TAGS],
        "list_id": audience.id,
        "_links": [],
    }
    if m.status == "unsubscribed":
        # Real members carry `unsubscribe_reason` only while unsubscribed: grouparoo/grouparoo
        # plugins/@grouparoo/mailchimp/__tests__/fixtures/export/exportRecord.js.
        body["unsubscribe_reason"] = m.unsubscribe_reason
    return body


def list_json(account: Account, a: Audience) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for m in a.members.values():
        counts[m.status] = counts.get(m.status, 0) + 1
    return {
        "id": a.id,
        "web_id": a.web_id,
        "name": a.name,
        "contact": {
            "company": account.account_name,
            "address1": "",
            "city": "",
            "state": "",
            "zip": "",
            "country": "US",
        },
        "permission_reminder": "You signed up on our website.",
        "use_archive_bar": False,
        "campaign_defaults": {
            "from_name": account.account_name,
            "from_email": "",
            "subject": "",
            "language": "en",
        },
        "notify_on_subscribe": "",
        "notify_on_unsubscribe": "",
        "date_created": a.date_created,
        "list_rating": 0,
        "email_type_option": False,
        "subscribe_url_short": "",
        "subscribe_url_long": "",
        "beamer_address": "",
        "visibility": "prv",
        "double_optin": a.double_optin,
        "has_welcome": False,
        "marketing_permissions": False,
        "modules": [],
        "stats": {
            "member_count": counts.get("subscribed", 0),
            "unsubscribe_count": counts.get("unsubscribed", 0),
            "cleaned_count": counts.get("cleaned", 0),
            "member_count_since_send": counts.get("subscribed", 0),
            "unsubscribe_count_since_send": 0,
            "cleaned_count_since_send": 0,
            "campaign_count": 0,
            "campaign_last_sent": "",
            "merge_field_count": len(a.merge_fields),
            "avg_sub_rate": 0,
            "avg_unsub_rate": 0,
            "target_sub_rate": 0,
            "open_rate": 0,
            "click_rate": 0,
            "last_sub_date": "",
            "last_unsub_date": "",
        },
        "_links": [],
    }


def tag_json(audience: Audience, m: Member) -> list[dict[str, Any]]:
    return [
        {"id": t.id, "name": t.name, "date_added": m.tags[t.id]} for t in audience.member_tags(m)
    ]


def member_template(audience: Audience) -> dict[str, Any]:
    """A fully populated member, for validating `fields` paths against an empty page."""
    dummy = Member(
        id="0" * 32,
        email_address="x@y.z",
        status="subscribed",
        merge_fields={t: "" for t in audience.merge_fields},
    )
    template = member_json(audience, dummy)
    template["unsubscribe_reason"] = ""  # present on unsubscribed members only
    return template


def _paths(spec: str | None) -> list[list[str]]:
    return [p.strip().split(".") for p in (spec or "").split(",") if p.strip()]


def _valid(template: Any, path: list[str]) -> bool:
    node = template
    for part in path:
        if isinstance(node, list):
            if not node:
                return True
            node = node[0]
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _project(node: Any, paths: list[list[str]], *, keep: bool) -> Any:
    """`fields` (keep the named paths) or `exclude_fields` (drop them); through lists, a path
    applies to each item."""
    return _project_named(node, _by_first_name(paths), keep=keep)


def _by_first_name(paths: list[list[str]]) -> dict[str, list[list[str]]]:
    """The paths by their first name, each with the rest of it (in the order given)."""
    named: dict[str, list[list[str]]] = {}
    for p in paths:
        named.setdefault(p[0], []).append(p[1:])
    return named


def _project_named(node: Any, named: dict[str, list[list[str]]], *, keep: bool) -> Any:
    # The paths are grouped once for a whole list (a 500-member batch answer), not per item.
    if isinstance(node, list):
        return [_project_named(item, named, keep=keep) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        subs = named.get(key)
        if not subs:  # not named: dropped by `fields`, kept by `exclude_fields`
            if not keep:
                out[key] = value
        elif any(not s for s in subs):  # named whole: the opposite
            if keep:
                out[key] = value
        else:  # only keys below it are named
            out[key] = _project(value, subs, keep=keep)
    return out


def project(
    body: dict[str, Any], template: dict[str, Any], fields: str | None, exclude: str | None
) -> dict[str, Any]:
    """Apply Mailchimp's dot-notation projection; unknown field names are an error.

    `template` is a full-shaped example of the response used to validate paths even when the
    real response has an empty list.
    """
    keep, drop = _paths(fields), _paths(exclude)
    if keep and drop:
        raise ApiError(400, "Bad Request", "fields and exclude_fields are mutually exclusive.")
    bad = [".".join(p) for p in keep + drop if not _valid(template, p)]
    if bad:
        raise ApiError(
            422,
            "Requested Fields Invalid",
            f"The following fields were requested but are invalid: {', '.join(bad)}",
        )
    if keep:
        return _project(body, keep, keep=True)
    if drop:
        return _project(body, drop, keep=False)
    return body
