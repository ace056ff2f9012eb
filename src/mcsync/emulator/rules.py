"""Mailchimp's member behaviours: upserts, email changes, archive, forget, tags.

Functions raise ApiError exactly where Mailchimp answers with an error and mutate state only
after every check has passed, so a rejected request never half-applies. The description's
types, enums and required fields are checked before these run (described.py); what remains
here are Mailchimp's data rules. Batch subscribe lives in batch.py, the refusals' wording and
evidence in refusals.py.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from . import validation
from .described import NOT_ACCEPTED, PATCH_WRITABLE, WRITABLE
from .errors import ANY_OF, ApiError, invalid, not_found
from .refusals import (
    LABELS,
    UNARCHIVABLE,
    UNSUBSCRIBED_BY_ADMIN,
    already_in_list,
    cannot_archive,
    compliance,
    forgotten,
    member_exists,
    missing_status,
    signup_refused,
)
from .state import Audience, Member, iso_now, subscriber_hash

__all__ = ["PATCH_WRITABLE", "WRITABLE"]

# Statuses a signup moves a person into (refused while Mailchimp limits their signups).
SIGNUP_STATUSES = ("subscribed", "pending")
MAX_TAG_LEN = 100


@dataclass(frozen=True)
class Policy:
    """What a request's surroundings decide: people whose signups are refused right now, and the
    switch for the thin-evidence batch case (see runtime.Options)."""

    signup_limited: Collection[str] = frozenset()
    batch_status_if_new_unarchives: bool = False

def status_of(value: Any, allowed: tuple[str, ...], field: str) -> str | None:
    if value is None:
        return None
    if value not in allowed:
        raise invalid([{"field": field, "message": NOT_ACCEPTED + ", ".join(allowed)}])
    return str(value)

def _extras(body: dict[str, Any]) -> dict[str, Any]:
    """Validated optional member fields we store (the rest of the schema is accepted, ignored)."""
    out: dict[str, Any] = {}
    if "email_type" in body:
        if body["email_type"] not in ("html", "text"):
            raise invalid([{"field": "email_type", "message": NOT_ACCEPTED + "html, text"}])
        out["email_type"] = body["email_type"]
    for key in ("ip_signup", "ip_opt"):
        if body.get(key):
            try:
                ipaddress.ip_address(str(body[key]))
            except ValueError:
                raise invalid(
                    [{"field": key, "message": "This value is not a valid IP address."}]
                ) from None
            out[key] = str(body[key])
    for key in ("timestamp_signup", "timestamp_opt", "language"):
        if isinstance(body.get(key), str):
            out[key] = body[key]
    if isinstance(body.get("vip"), bool):
        out["vip"] = body["vip"]
    if isinstance(body.get("interests"), dict):
        out["interests"] = {str(k): bool(v) for k, v in body["interests"].items()}
    return out


def tag_names(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise invalid([{"field": "tags", "message": ANY_OF}])
    for name in value:
        _check_tag_name(name)
    return list(value)


def _check_tag_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise invalid([{"field": "tags.name", "message": "This value should not be blank."}])
    if len(name) > MAX_TAG_LEN:
        raise invalid(
            [
                {
                    "field": "tags.name",
                    "message": f"Tag names must be {MAX_TAG_LEN} characters or fewer.",
                }
            ]
        )
    return name


def add_tags(audience: Audience, member: Member, names: list[str]) -> bool:
    """Add tags by name (case-insensitive match, first casing wins); True if anything changed."""
    if not names:
        return False
    changed = False
    stamp = iso_now()  # a date-time, as the description gives `date_added`
    for name in names:
        tag = audience.tag_for(name.strip())
        if tag.id not in member.tags:
            member.tags[tag.id] = stamp
            changed = True
    return changed


def remove_tags(audience: Audience, member: Member, names: list[str]) -> bool:
    changed = False
    for name in names:
        tag = audience.tags.get(name.strip().lower())
        if tag is not None and member.tags.pop(tag.id, None) is not None:
            changed = True
    return changed


def check_status_change(member: Member, status: str, policy: Policy) -> None:
    """Refuse a status change Mailchimp refuses, before anything is applied.

    Only a compliance hold (the person's own unsubscribe, or a bounce) blocks `subscribed`; an
    unsubscribe made through the API does not: grouparoo/grouparoo
    plugins/@grouparoo/mailchimp/__tests__/fixtures/export/exportRecord.js records PUT
    `unsubscribed` then PUT `subscribed` -> 200 (also spatie/laravel-newsletter#172). The hold
    survives an archive (our strict choice; unverified).
    """
    if status == "subscribed" and member.compliance_hold:
        raise compliance(member.email_address)
    if (
        status in SIGNUP_STATUSES
        and status != member.status
        and member.email_address.lower() in policy.signup_limited
    ):
        raise signup_refused(member.email_address)


def set_status(member: Member, status: str) -> None:
    """Apply an explicit status (already checked by check_status_change)."""
    if status == member.status:
        return
    member.status = status
    member.status_before_archive = ""
    if status == "cleaned":
        member.compliance_hold = True  # a bounce
    member.unsubscribe_reason = UNSUBSCRIBED_BY_ADMIN if status == "unsubscribed" else ""


def archive(member: Member) -> None:
    member.status_before_archive = member.status
    member.status = "archived"
    member.touch()


def new_member(
    audience: Audience,
    email: str,
    status: str,
    body: dict[str, Any],
    skip_required: bool,
    tags: list[str],
) -> Member:
    fields = validation.merge_fields(
        audience, {}, body.get("merge_fields"), skip_required=skip_required
    )
    extras = _extras(body)
    member = Member(
        id=subscriber_hash(email),
        email_address=email,
        status=status,
        merge_fields=fields,
        compliance_hold=status == "cleaned",
        unsubscribe_reason=UNSUBSCRIBED_BY_ADMIN if status == "unsubscribed" else "",
    )
    for key, value in extras.items():
        setattr(member, key, value)
    add_tags(audience, member, tags)
    audience.add(member)
    return member


def update_member(
    audience: Audience,
    member: Member,
    body: dict[str, Any],
    *,
    status: str | None,
    new_email: str | None,
    skip_required: bool,
    policy: Policy,
) -> None:
    """Validate, then apply, an update to an existing member.

    Without an explicit `status`, an archived member stays archived and nothing is applied
    (strict choice for the unverified case: a sync cannot "update" an archived contact without
    deciding to unarchive it).
    """
    if new_email is not None:
        taken = audience.members.get(subscriber_hash(new_email))
        if taken is not None:
            raise already_in_list(new_email, LABELS[taken.status])
        if subscriber_hash(new_email) in audience.forgotten:
            raise already_in_list(new_email, "Deleted")
    if status is not None:
        check_status_change(member, status, policy)
    fields = validation.merge_fields(
        audience, member.merge_fields, body.get("merge_fields"), skip_required=skip_required
    )
    extras = _extras(body)
    if member.status == "archived" and status is None:
        return
    if new_email is not None:
        audience.rename(member, new_email)
    if status is not None:
        set_status(member, status)
    member.merge_fields = fields
    for key, value in extras.items():
        setattr(member, key, value)
    member.touch()


def body_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, "Invalid Resource", "The resource submitted could not be validated.")
    return body


def check_signup(email: str, policy: Policy) -> None:
    if email.lower() in policy.signup_limited:
        raise signup_refused(email)


def put_or_patch(
    audience: Audience,
    key: str,
    body: Any,
    *,
    patch: bool,
    skip_merge_validation: bool,
    policy: Policy,
) -> Member:
    """PUT (upsert) or PATCH (update) on /lists/{id}/members/{key}."""
    body = body_object(body)
    member = audience.find(key)
    status = status_of(body.get("status"), PATCH_WRITABLE if patch else WRITABLE, "status")
    email = body.get("email_address")
    if member is None:
        if patch:
            raise not_found()
        email = validation.check_email(email)
        path_hash = subscriber_hash(key) if "@" in key else key
        if subscriber_hash(email) in audience.forgotten or path_hash in audience.forgotten:
            raise forgotten(email)
        if subscriber_hash(email) in audience.members:
            raise member_exists(email)  # the path's hash and the body's address disagree
        new_status = status_of(body.get("status_if_new"), WRITABLE, "status_if_new") or status
        if new_status is None:
            raise missing_status()
        tags = tag_names(body.get("tags"))
        check_signup(email, policy)
        return new_member(audience, email, new_status, body, skip_merge_validation, tags)
    if not patch:
        status_of(body.get("status_if_new"), WRITABLE, "status_if_new")
    # On an existing member, PUT needs neither `email_address` nor a status: grouparoo/grouparoo
    # plugins/@grouparoo/mailchimp/__tests__/fixtures/export/exportRecord.js and
    # .../integration/mailchimpExportContactsById.js record 200s for PUTs with only
    # `email_address` + `merge_fields`, and with `merge_fields` alone (8 recordings).
    if email is not None:
        email = validation.check_email(email)
    new_email = email if email is not None and subscriber_hash(email) != member.id else None
    # Tags in a PUT/PATCH body are ignored for an existing member, as Mailchimp does.
    update_member(
        audience,
        member,
        body,
        status=status,
        new_email=new_email,
        skip_required=skip_merge_validation,
        policy=policy,
    )
    return member


def post_member(
    audience: Audience, body: Any, *, skip_merge_validation: bool, policy: Policy
) -> Member:
    """POST /lists/{id}/members: create; `status` is required. An archived address is
    unarchived instead: grouparoo/grouparoo plugins/@grouparoo/mailchimp/__tests__/fixtures/
    export/exportRecord.js and integration/mailchimpExportContacts.js record 200 with the given
    status, merge fields updated, `contact_id` and tags kept."""
    body = body_object(body)
    email = validation.check_email(body.get("email_address"))
    status = status_of(body.get("status"), WRITABLE, "status")
    h = subscriber_hash(email)
    if h in audience.forgotten:
        raise forgotten(email)
    existing = audience.members.get(h)
    if existing is not None and existing.status != "archived":
        raise member_exists(email)
    if status is None:
        raise missing_status()
    tags = tag_names(body.get("tags"))
    if existing is None:
        check_signup(email, policy)
        return new_member(audience, email, status, body, skip_merge_validation, tags)
    update_member(
        audience,
        existing,
        body,
        status=status,
        new_email=None,
        skip_required=skip_merge_validation,
        policy=policy,
    )
    if add_tags(audience, existing, tags):
        existing.touch()
    return existing


def delete_member(audience: Audience, key: str) -> None:
    """DELETE archives; pending, cleaned and archived members are refused with 405."""
    member = audience.find(key)
    if member is None:
        raise not_found()
    if member.status in UNARCHIVABLE:
        raise cannot_archive()
    archive(member)


def delete_permanent(audience: Audience, key: str) -> None:
    member = audience.find(key)
    if member is None:
        raise not_found()
    audience.forget(member)


def post_tags(audience: Audience, key: str, body: Any) -> None:
    """POST …/tags: active adds, inactive removes, tags not named are untouched."""
    member = audience.find(key)
    if member is None:
        raise not_found()
    body = body_object(body)
    tags = body.get("tags")
    if not isinstance(tags, list):
        raise invalid([{"field": "tags", "message": "Schema describes array, NULL found instead"}])
    adds: list[str] = []
    removes: list[str] = []
    for item in tags:
        if not isinstance(item, dict):
            raise invalid([{"field": "tags", "message": ANY_OF}])
        name = _check_tag_name(item.get("name"))
        if item.get("status") == "active":
            adds.append(name)
        elif item.get("status") == "inactive":
            removes.append(name)
        else:
            raise invalid([{"field": "tags.status", "message": NOT_ACCEPTED + "inactive, active"}])
    changed = add_tags(audience, member, adds)
    changed = remove_tags(audience, member, removes) or changed
    if changed:
        member.touch()
