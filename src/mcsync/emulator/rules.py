"""Mailchimp's member behaviours: upserts, email changes, archive, forget, tags, batch subscribe.

Functions raise ApiError exactly where Mailchimp answers with an error and mutate state only
after every check has passed, so a rejected request never half-applies.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any

from . import validation
from .errors import ANY_OF, ApiError, invalid, not_found
from .state import Audience, Member, subscriber_hash

WRITABLE = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional")
PATCH_WRITABLE = ("subscribed", "unsubscribed", "cleaned", "pending")
COMPLIANCE = ("unsubscribed", "cleaned")
LABELS = {
    "subscribed": "Subscribed",
    "unsubscribed": "Unsubscribed",
    "cleaned": "Cleaned",
    "pending": "Pending",
    "transactional": "Non-Subscribed",
    "archived": "Archived",
}
MAX_TAG_LEN = 100
BATCH_MAX = 500


def member_exists(email: str) -> ApiError:
    return ApiError(
        400,
        "Member Exists",
        f"{email} is already a list member. Use PUT to insert or update list members.",
    )


def forgotten(email: str) -> ApiError:
    return ApiError(
        400,
        "Forgotten Email Not Subscribed",
        f"{email} was permanently deleted and cannot be re-imported. The contact must "
        "re-subscribe to get back on the list.",
    )


def compliance(email: str) -> ApiError:
    return ApiError(
        400,
        "Member In Compliance State",
        f"{email} is in a compliance state due to unsubscribe, bounce, or compliance "
        "review and cannot be subscribed.",
    )


def already_in_list(email: str, label: str) -> ApiError:
    return invalid(
        [
            {
                "field": "email address",
                "message": f'"{email}" is already in this list with a status of "{label}".',
            }
        ]
    )


def _status(value: Any, allowed: tuple[str, ...], field: str) -> str | None:
    if value is None:
        return None
    if value not in allowed:
        raise invalid([{"field": field, "message": f"Value must be one of: {', '.join(allowed)}"}])
    return str(value)


def _missing_status() -> ApiError:
    return invalid([{"field": "status", "message": "Schema describes enum, NULL found instead"}])


def _extras(body: dict[str, Any]) -> dict[str, Any]:
    """Validated optional member fields we store (the rest of the schema is accepted, ignored)."""
    out: dict[str, Any] = {}
    if "email_type" in body:
        if body["email_type"] not in ("html", "text"):
            raise invalid([{"field": "email_type", "message": "Value must be one of: html, text"}])
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


def _tag_names(value: Any) -> list[str]:
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
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
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


def set_status(member: Member, status: str) -> None:
    """Apply an explicit status; subscribing a compliance-state contact is refused.

    Compliance survives an archive: an unsubscribed member that was archived still cannot be
    set to subscribed (our strict choice; Mailchimp's behaviour here is unverified).
    """
    effective = member.status_before_archive if member.status == "archived" else member.status
    if status == "subscribed" and effective in COMPLIANCE:
        raise compliance(member.email_address)
    if status == member.status:
        return
    member.status = status
    member.status_before_archive = ""
    member.unsubscribe_reason = "N/A (Unsubscribed by an admin)" if status == "unsubscribed" else ""


def archive(member: Member) -> None:
    member.status_before_archive = member.status
    member.status = "archived"
    member.touch()


def _new_member(
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
        id=subscriber_hash(email), email_address=email, status=status, merge_fields=fields
    )
    for key, value in extras.items():
        setattr(member, key, value)
    add_tags(audience, member, tags)
    audience.add(member)
    return member


def _update(
    audience: Audience,
    member: Member,
    body: dict[str, Any],
    *,
    status: str | None,
    new_email: str | None,
    skip_required: bool,
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
        effective = member.status_before_archive if member.status == "archived" else member.status
        if status == "subscribed" and effective in COMPLIANCE:
            raise compliance(member.email_address)
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


def _body(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, "Invalid Resource", "The resource submitted could not be validated.")
    return body


def put_or_patch(
    audience: Audience, key: str, body: Any, *, patch: bool, skip_merge_validation: bool
) -> Member:
    """PUT (upsert) or PATCH (update) on /lists/{id}/members/{key}."""
    body = _body(body)
    member = audience.find(key)
    status = _status(body.get("status"), PATCH_WRITABLE if patch else WRITABLE, "status")
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
        new_status = _status(body.get("status_if_new"), WRITABLE, "status_if_new") or status
        if new_status is None:
            raise _missing_status()
        return _new_member(
            audience, email, new_status, body, skip_merge_validation, _tag_names(body.get("tags"))
        )
    if not patch:
        email = validation.check_email(email)
        _status(body.get("status_if_new"), WRITABLE, "status_if_new")
        if status is None and body.get("status_if_new") is None:
            raise _missing_status()
    elif email is not None:
        email = validation.check_email(email)
    new_email = email if email is not None and subscriber_hash(email) != member.id else None
    # Tags in a PUT/PATCH body are ignored for an existing member, as Mailchimp does.
    _update(
        audience,
        member,
        body,
        status=status,
        new_email=new_email,
        skip_required=skip_merge_validation,
    )
    return member


def post_member(audience: Audience, body: Any, *, skip_merge_validation: bool) -> Member:
    """POST /lists/{id}/members: create only; `status` is required."""
    body = _body(body)
    email = validation.check_email(body.get("email_address"))
    status = _status(body.get("status"), WRITABLE, "status")
    h = subscriber_hash(email)
    if h in audience.forgotten:
        raise forgotten(email)
    if h in audience.members:
        raise member_exists(email)
    if status is None:
        raise _missing_status()
    return _new_member(
        audience, email, status, body, skip_merge_validation, _tag_names(body.get("tags"))
    )


def delete_member(audience: Audience, key: str) -> None:
    """DELETE archives. An already archived member is 404 (strict choice, unverified)."""
    member = audience.find(key)
    if member is None or member.status == "archived":
        raise not_found()
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
    body = _body(body)
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
            raise invalid(
                [{"field": "tags.status", "message": "Value must be one of: active, inactive"}]
            )
    changed = add_tags(audience, member, adds)
    changed = remove_tags(audience, member, removes) or changed
    if changed:
        member.touch()


def _batch_error(email: str, err: ApiError) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "email_address": email,
        "error": err.detail,
        "error_code": "ERROR_GENERIC",
        "field": "",
        "field_message": "",
    }
    if err.errors:
        entry["field"] = err.errors[0]["field"]
        entry["field_message"] = err.errors[0]["message"]
    return entry


def _batch_one(
    audience: Audience, item: Any, *, update_existing: bool, sync_tags: bool, skip_required: bool
) -> tuple[str, Member]:
    """One batch member -> ("new"|"updated", member); raises ApiError for a per-member error."""
    item = _body(item)
    email = validation.check_email(item.get("email_address"))
    status = _status(item.get("status"), WRITABLE, "status")
    status_if_new = _status(item.get("status_if_new"), WRITABLE, "status_if_new")
    tags = _tag_names(item.get("tags"))
    h = subscriber_hash(email)
    if h in audience.forgotten:
        raise forgotten(email)
    member = audience.members.get(h)
    if member is None:
        new_status = status_if_new or status
        if new_status is None:
            raise _missing_status()
        return "new", _new_member(audience, email, new_status, item, skip_required, tags)
    if not update_existing:
        raise ApiError(
            400,
            "ERROR_CONTACT_EXISTS",
            f"{email} is already a list member, do you want to update? please provide "
            "update_existing:true in the request body",
        )
    if status is None and status_if_new is None:
        raise _missing_status()
    was_archived = member.status == "archived"
    # status_if_new is ignored for existing members, per the field's description.
    _update(audience, member, item, status=status, new_email=None, skip_required=skip_required)
    if was_archived and status is None:
        return "updated", member  # stays archived, nothing applied (see _update)
    # Since 2022-01-24 batch tags are added to existing members; sync_tags replaces them all.
    if sync_tags:
        keep = {audience.tag_for(n).id for n in tags}
        for tag_id in [t for t in member.tags if t not in keep]:
            del member.tags[tag_id]
    add_tags(audience, member, tags)
    member.touch()
    return "updated", member


def batch_subscribe(
    audience: Audience, body: Any, *, skip_merge_validation: bool, skip_duplicate_check: bool
) -> tuple[list[Member], list[Member], list[dict[str, Any]]]:
    """POST /lists/{id}: returns (new members, updated members, per-member errors)."""
    body = _body(body)
    items = body.get("members")
    if not isinstance(items, list):
        raise invalid(
            [{"field": "members", "message": "Schema describes array, NULL found instead"}]
        )
    if len(items) > BATCH_MAX:
        raise invalid(
            [
                {
                    "field": "members",
                    "message": f"You can only subscribe up to {BATCH_MAX} members at a time.",
                }
            ]
        )
    update_existing = _flag(body.get("update_existing"))
    sync_tags = _flag(body.get("sync_tags"))
    new: list[Member] = []
    updated: list[Member] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for item in items:
        email = str(item.get("email_address", "")) if isinstance(item, dict) else ""
        key = email.lower()
        if key in seen:
            if not skip_duplicate_check:
                errors.append(
                    {
                        "email_address": email,
                        "error_code": "ERROR_GENERIC",
                        "error": f"{email} is a duplicate in this request.",
                        "field": "",
                        "field_message": "",
                    }
                )
            continue  # with skip_duplicate_check the first occurrence wins
        seen.add(key)
        try:
            kind, member = _batch_one(
                audience,
                item,
                update_existing=update_existing,
                sync_tags=sync_tags,
                skip_required=skip_merge_validation,
            )
        except ApiError as err:
            entry = _batch_error(email, err)
            if err.title == "ERROR_CONTACT_EXISTS":
                entry["error_code"] = "ERROR_CONTACT_EXISTS"
            errors.append(entry)
            continue
        (new if kind == "new" else updated).append(member)
    return new, updated, errors


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() in ("true", "1")
    return bool(value)
