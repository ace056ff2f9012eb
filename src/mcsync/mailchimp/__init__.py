"""Mailchimp Marketing API v3 client: typed, pooled, one error taxonomy, no retries."""

from mcsync.mailchimp.client import MailchimpClient, make_http_client, subscriber_hash
from mcsync.mailchimp.errors import (
    ConnectionLevelError,
    ContactLevelError,
    FieldError,
    MailchimpError,
    NotFoundError,
    OAuthError,
    RequestError,
    TransientError,
    error_from_response,
    failed_batch_items,
)
from mcsync.mailchimp.models import (
    Audience,
    BatchError,
    BatchMember,
    BatchResult,
    Member,
    MembersPage,
    OAuthMetadata,
    Tag,
    classify_batch_error,
)
from mcsync.mailchimp.oauth import authorize_url, exchange_code, fetch_metadata

__all__ = [
    "Audience",
    "BatchError",
    "BatchMember",
    "BatchResult",
    "ConnectionLevelError",
    "ContactLevelError",
    "FieldError",
    "MailchimpClient",
    "MailchimpError",
    "Member",
    "MembersPage",
    "NotFoundError",
    "OAuthError",
    "OAuthMetadata",
    "RequestError",
    "Tag",
    "TransientError",
    "authorize_url",
    "classify_batch_error",
    "error_from_response",
    "exchange_code",
    "failed_batch_items",
    "fetch_metadata",
    "make_http_client",
    "subscriber_hash",
]
