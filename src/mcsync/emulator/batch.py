"""Batch subscribe (POST /lists/{id}): up to 500 members, per-member errors, and the whole
request refused when any member breaks the description."""

from __future__ import annotations

from typing import Any

from . import validation
from .described import NOT_ACCEPTED, WRITABLE
from .errors import ANY_OF, ApiError, invalid
from .refusals import forgotten, missing_status
from .rules import (
    Policy,
    add_tags,
    body_object,
    check_signup,
    new_member,
    status_of,
    tag_names,
    update_member,
)
from .state import Audience, Member, subscriber_hash

BATCH_MAX = 500


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


def _stricter_errors(audience: Audience, items: list[Any]) -> list[dict[str, str]]:
    """Violations that fail the WHOLE batch beyond the description's own (described.py runs
    first): an `email_type` other than html/text, and a merge value whose JSON type the
    audience's field cannot take (a boolean, or an object outside an address). Both are the
    emulator's strict reading (listed in docs/emulator.md). Data rules (fake addresses,
    merge-field formats, required fields) stay per-member errors.

    brandonseydel/MailChimp.Net#567: one member with `status: ""` -> 400 Invalid Resource,
    `errors: [{field: "members.item:0.status", message: "Data presented is not one of the
    accepted values..."}]`, nothing applied.
    """
    errors: list[dict[str, str]] = []
    for i, item in enumerate(items):
        at = f"members.item:{i}"
        if not isinstance(item, dict):
            continue
        if item.get("email_type") is not None and item["email_type"] not in ("html", "text"):
            errors.append({"field": f"{at}.email_type", "message": NOT_ACCEPTED + "html, text"})
        given = item.get("merge_fields")
        if isinstance(given, dict):
            for tag, value in given.items():
                mf = audience.merge_fields.get(tag)
                if mf is not None and not validation.schema_type_ok(mf, value):
                    errors.append({"field": f"{at}.merge_fields.{tag}", "message": ANY_OF})
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
    """One batch member -> ("new"|"updated"|"unlisted", member); raises ApiError for a
    per-member error."""
    item = body_object(item)
    email = validation.check_email(item.get("email_address"))
    status = status_of(item.get("status"), WRITABLE, "status")
    status_if_new = status_of(item.get("status_if_new"), WRITABLE, "status_if_new")
    tags = tag_names(item.get("tags"))
    h = subscriber_hash(email)
    if h in audience.forgotten:
        raise forgotten(email)
    member = audience.members.get(h)
    if member is None:
        new_status = status_if_new or status
        if new_status is None:
            raise missing_status()
        # A per-member error in a batch (signup refusals show up per address; see signup_refused).
        check_signup(email, policy)
        return "new", new_member(audience, email, new_status, item, skip_required, tags)
    if not update_existing:
        raise ApiError(
            400,
            "ERROR_CONTACT_EXISTS",
            f"{email} is already a list member, do you want to update? please provide "
            "update_existing:true in the request body",
        )
    if status is None and status_if_new is None:
        raise missing_status()
    if member.status == "archived" and status is None:
        if not policy.batch_status_if_new_unarchives:
            # Thin evidence (see runtime.Options): by default left archived with nothing
            # applied, after the usual validation, and listed nowhere: the description's
            # `updated_members` have no `archived` status, and the member was not updated.
            update_member(
                audience,
                member,
                item,
                status=None,
                new_email=None,
                skip_required=skip_required,
                policy=policy,
            )
            return "unlisted", member
        # The other setting: re-created like POST /members on an archived address.
        status = status_if_new
    # Otherwise status_if_new is ignored for existing members, per the field's description.
    update_member(
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
    body = body_object(body)
    # An array: the description's check (described.check_body, before every handler) refused a
    # body without one, as Mailchimp does (tests/integration/emulator/test_description.py).
    items: list[Any] = body["members"]
    if len(items) > BATCH_MAX:
        raise invalid(
            [
                {
                    "field": "members",
                    "message": f"You can only subscribe up to {BATCH_MAX} members at a time.",
                }
            ]
        )
    schema_errors = _stricter_errors(audience, items)
    if schema_errors:
        raise invalid(schema_errors)
    # Booleans or null by the description (described.py refuses anything else).
    update_existing = body.get("update_existing") is True
    sync_tags = body.get("sync_tags") is True
    new: list[Member] = []
    updated: list[Member] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for item in items:
        given = item.get("email_address") if isinstance(item, dict) else None
        email = given if isinstance(given, str) else ""
        key = email.lower()
        if key and key in seen:
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
        if kind == "new":
            new.append(member)
        elif kind == "updated":
            updated.append(member)
    return new, updated, errors

