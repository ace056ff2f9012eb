"""Mailchimp's member behaviours: upserts, email changes, archive, forget, tags, batch subscribe.

Functions raise ApiError exactly where Mailchimp answers with an error and mutate state only
after every check has passed, so a rejected request never half-applies.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from . import validation
from .errors import ANY_OF, ApiError, invalid, not_found
from .state import Audience, Member, subscriber_hash

WRITABLE = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional")
PATCH_WRITABLE = ("subscribed", "unsubscribed", "cleaned", "pending")
# Statuses a signup moves a person into (refused while Mailchimp limits their signups).
SIGNUP_STATUSES = ("subscribed", "pending")
# DELETE (archive) is refused for these. Recorded: grouparoo/grouparoo
# plugins/@grouparoo/mailchimp/__tests__/fixtures/export/exportRecord.js (3 recordings on
# archived members) and .../fixtures/integration/mailchimpExportContacts.js,
# mailchimpExportContactsById.js; pending and cleaned ("bounced") are named by the detail.
UNARCHIVABLE = ("pending", "cleaned", "archived")
CANNOT_ARCHIVE = (
    "This list member cannot be removed. Can not archive a contact that is bounced, pending "
    "or archived"
)
# Same recordings: the 405 carries "Allow: GET, PUT".
CANNOT_ARCHIVE_HEADERS = {"Allow": "GET, PUT"}
UNSUBSCRIBED_BY_ADMIN = "N/A (Unsubscribed by admin)"  # grouparoo exportRecord.js, PUT unsubscribed
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
# Batch schema failures name the accepted values (brandonseydel/MailChimp.Net#567 shows the
# message's start, "Data presented is not one of the accepted values"; the list is ours).
NOT_ACCEPTED = "Data presented is not one of the accepted values: "


@dataclass(frozen=True)
class Policy:
    """What a request's surroundings decide: people whose signups are refused right now, and the
    switch for the thin-evidence batch case (see runtime.Options)."""

    signup_limited: Collection[str] = frozenset()
    batch_status_if_new_unarchives: bool = False


def _untyped(title: str, detail: str) -> ApiError:
    """A member refusal (400) whose real body carries no `type` (the evidence is beside each)."""
    return ApiError(400, title, detail, typed=False)


def member_exists(email: str) -> ApiError:
    # grouparoo/grouparoo plugins/@grouparoo/mailchimp/__tests__/fixtures/export/exportRecord.js
    # (PUT, 2 recordings).
    detail = f"{email} is already a list member. Use PUT to insert or update list members."
    return _untyped("Member Exists", detail)


def forgotten(email: str) -> ApiError:
    # ibericode/mailchimp-for-wordpress#771 (POST /members).
    return _untyped(
        "Forgotten Email Not Subscribed",
        f"{email} was permanently deleted and cannot be re-imported. The contact must "
        "re-subscribe to get back on the list.",
    )


def compliance(email: str) -> ApiError:
    # ibericode/mailchimp-for-wordpress#798 (PATCH).
    return _untyped(
        "Member In Compliance State",
        f"{email} is in a compliance state due to unsubscribe, bounce, or compliance "
        "review and cannot be subscribed.",
    )


def signup_refused(email: str) -> ApiError:
    """Mailchimp's temporary, per-person refusal: 400 Invalid Resource with `type` and no
    `errors[]` (ibericode/mailchimp-for-wordpress#771, POST /members; #506: it affects only
    that address)."""
    return ApiError(
        400,
        "Invalid Resource",
        f"{email} has signed up to a lot of lists very recently; we're not allowing more "
        "signups for now",
    )


def cannot_archive() -> ApiError:
    return ApiError(405, "Method Not Allowed", CANNOT_ARCHIVE, headers=CANNOT_ARCHIVE_HEADERS)


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


def _update(
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


def _body(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, "Invalid Resource", "The resource submitted could not be validated.")
    return body


def _check_signup(email: str, policy: Policy) -> None:
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
        tags = _tag_names(body.get("tags"))
        _check_signup(email, policy)
        return _new_member(audience, email, new_status, body, skip_merge_validation, tags)
    if not patch:
        _status(body.get("status_if_new"), WRITABLE, "status_if_new")
    # On an existing member, PUT needs neither `email_address` nor a status: grouparoo/grouparoo
    # plugins/@grouparoo/mailchimp/__tests__/fixtures/export/exportRecord.js and
    # .../integration/mailchimpExportContactsById.js record 200s for PUTs with only
    # `email_address` + `merge_fields`, and with `merge_fields` alone (8 recordings).
    if email is not None:
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
    body = _body(body)
    email = validation.check_email(body.get("email_address"))
    status = _status(body.get("status"), WRITABLE, "status")
    h = subscriber_hash(email)
    if h in audience.forgotten:
        raise forgotten(email)
    existing = audience.members.get(h)
    if existing is not None and existing.status != "archived":
        raise member_exists(email)
    if status is None:
        raise _missing_status()
    tags = _tag_names(body.get("tags"))
    if existing is None:
        _check_signup(email, policy)
        return _new_member(audience, email, status, body, skip_merge_validation, tags)
    _update(
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


def _batch_schema_errors(audience: Audience, items: list[Any]) -> list[dict[str, str]]:
    """Schema violations anywhere in a batch; any one fails the WHOLE request.

    brandonseydel/MailChimp.Net#567: one member with `status: ""` -> 400 Invalid Resource,
    `errors: [{field: "members.item:0.status", message: "Data presented is not one of the
    accepted values..."}]`, nothing applied. Wrong JSON types (null/boolean merge values,
    non-string tags, a missing address) are schema violations of the same kind (unverified
    messages). Data rules (fake addresses, merge-field formats, required fields) stay
    per-member errors.
    """
    errors: list[dict[str, str]] = []

    def wrong_type(field: str, wanted: str, value: Any) -> None:
        found = validation.json_type(value)
        errors.append(
            {"field": field, "message": f"Schema describes {wanted}, {found} found instead"}
        )

    for i, item in enumerate(items):
        at = f"members.item:{i}"
        if not isinstance(item, dict):
            wrong_type(at, "object", item)
            continue
        if not isinstance(item.get("email_address"), str):
            wrong_type(f"{at}.email_address", "string", item.get("email_address"))
        for key in ("status", "status_if_new"):
            value = item.get(key)
            if value is not None and (not isinstance(value, str) or value not in WRITABLE):
                errors.append(
                    {"field": f"{at}.{key}", "message": NOT_ACCEPTED + ", ".join(WRITABLE)}
                )
        if "email_type" in item and item["email_type"] not in ("html", "text"):
            errors.append({"field": f"{at}.email_type", "message": NOT_ACCEPTED + "html, text"})
        given = item.get("merge_fields")
        if given is not None and not isinstance(given, dict):
            wrong_type(f"{at}.merge_fields", "object", given)
        elif isinstance(given, dict):
            for tag, value in given.items():
                mf = audience.merge_fields.get(tag)
                if mf is not None and not validation.schema_type_ok(mf, value):
                    errors.append({"field": f"{at}.merge_fields.{tag}", "message": ANY_OF})
        tags = item.get("tags")
        if tags is not None:
            if not isinstance(tags, list):
                wrong_type(f"{at}.tags", "array", tags)
            else:
                for j, name in enumerate(tags):
                    if not isinstance(name, str):
                        wrong_type(f"{at}.tags.item:{j}", "string", name)
    return errors


def _batch_one(
    audience: Audience,
    item: Any,
    *,
    update_existing: bool,
    sync_tags: bool,
    skip_required: bool,
    policy: Policy,
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
        # A per-member error in a batch (signup refusals show up per address; see signup_refused).
        _check_signup(email, policy)
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
    if member.status == "archived" and status is None:
        if not policy.batch_status_if_new_unarchives:
            # Thin evidence (see runtime.Options): by default listed as updated but left
            # archived with nothing applied, after the usual validation.
            _update(
                audience,
                member,
                item,
                status=None,
                new_email=None,
                skip_required=skip_required,
                policy=policy,
            )
            return "updated", member
        # The other setting: re-created like POST /members on an archived address.
        status = status_if_new
    # Otherwise status_if_new is ignored for existing members, per the field's description.
    _update(
        audience,
        member,
        item,
        status=status,
        new_email=None,
        skip_required=skip_required,
        policy=policy,
    )
    # Since 2022-01-24 batch tags are added to existing members; sync_tags replaces them all.
    if sync_tags:
        keep = {audience.tag_for(n).id for n in tags}
        for tag_id in [t for t in member.tags if t not in keep]:
            del member.tags[tag_id]
    add_tags(audience, member, tags)
    member.touch()
    return "updated", member


def batch_subscribe(
    audience: Audience,
    body: Any,
    *,
    skip_merge_validation: bool,
    skip_duplicate_check: bool,
    policy: Policy,
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
    schema_errors = _batch_schema_errors(audience, items)
    if schema_errors:
        raise invalid(schema_errors)
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
                policy=policy,
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
