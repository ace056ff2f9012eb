"""Typed views of Mailchimp's JSON. Unknown fields are ignored, so Mailchimp can add more.

Nothing here requires a field Mailchimp may leave out or send as ``null``: real answers omit
``unsubscribe_reason`` unless a member is unsubscribed, ``marketing_permissions`` on some
audiences (grouparoo/grouparoo plugins/@grouparoo/mailchimp/__tests__/fixtures/export/
exportRecord.js), and ``fields=`` projections omit whatever was not asked for. A missing or null
field takes its default; a member's ``id`` falls back to the hash of its address.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mcsync.mailchimp.errors import (
    ContactLevelError,
    classify_contact_message,
    field_category,
    normalise_field,
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_missing(cls, data: Any) -> Any:
        # `null` (e.g. `merge_fields: null`, `tags: null`) means "not there": use the default.
        # (Copied only when there is one: a batch answer validates 500 members at a time.)
        if isinstance(data, dict) and None in data.values():
            return {k: v for k, v in data.items() if v is not None}
        return data


class Tag(_Model):
    name: str = ""
    id: int | None = None


class Member(_Model):
    id: str = ""
    email_address: str = ""
    status: str = ""
    merge_fields: dict[str, Any] = Field(default_factory=dict)
    tags: list[Tag] = Field(default_factory=list)
    list_id: str | None = None

    @model_validator(mode="after")
    def _id_from_address(self) -> Member:
        # The id is md5(lower(address)); rebuild it when a projection or an answer left it out.
        if not self.id and self.email_address:
            address = self.email_address.strip().lower().encode("utf-8")
            self.id = hashlib.md5(address, usedforsecurity=False).hexdigest()
        return self


class Audience(_Model):
    id: str
    name: str = ""
    double_optin: bool = False
    member_count: int = 0

    @model_validator(mode="before")
    @classmethod
    def _from_stats(cls, data: Any) -> Any:
        if isinstance(data, dict) and "member_count" not in data:
            stats = data.get("stats")
            if isinstance(stats, dict) and stats.get("member_count") is not None:
                data = {**data, "member_count": stats["member_count"]}
        return data


class BatchMember(_Model):
    email_address: str
    status_if_new: str
    merge_fields: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)


class BatchError(_Model):
    email_address: str = ""
    error: str = ""
    error_code: str | None = None
    field: str | None = None
    field_message: str | None = None


class BatchResult(_Model):
    new_members: list[Member] = Field(default_factory=list)
    updated_members: list[Member] = Field(default_factory=list)
    errors: list[BatchError] = Field(default_factory=list)
    total_created: int = 0
    total_updated: int = 0
    error_count: int = 0


class MembersPage(_Model):
    members: list[Member] = Field(default_factory=list)
    total_items: int = 0


class OAuthMetadata(_Model):
    dc: str
    api_endpoint: str
    login_url: str | None = None
    accountname: str | None = None


def classify_batch_error(err: BatchError) -> ContactLevelError:
    """Map one per-member error of a batch subscribe onto the contact-level taxonomy."""
    text = " ".join(t for t in (err.error, err.field_message or "") if t)
    found = classify_contact_message(text, field=err.field, error_code=err.error_code)
    if found is None and err.field_message and field_category(err.field) != "schema":
        found = ("merge_fields", normalise_field(err.field))
    kind, field = found if found is not None else ("invalid", normalise_field(err.field))
    reason = err.error
    if err.field and err.field_message:
        reason = (
            f"{reason} ({err.field}: {err.field_message})"
            if reason
            else (f"{err.field}: {err.field_message}")
        )
    return ContactLevelError(
        err.error_code or "Batch member error",
        err.error,
        kind=kind,
        field=field,
        reason=reason or kind,
    )
