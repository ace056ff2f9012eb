"""Mailchimp's refusals of member requests: titles, details and the evidence for each.

Several real refusals carry no `type` (see `untyped`); each constructor cites the recording
its wording comes from.
"""

from __future__ import annotations

from .errors import ApiError, invalid

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


def untyped(title: str, detail: str) -> ApiError:
    """A member refusal (400) whose real body carries no `type` (the evidence is beside each)."""
    return ApiError(400, title, detail, typed=False)


def member_exists(email: str) -> ApiError:
    # grouparoo/grouparoo plugins/@grouparoo/mailchimp/__tests__/fixtures/export/exportRecord.js
    # (PUT, 2 recordings).
    detail = f"{email} is already a list member. Use PUT to insert or update list members."
    return untyped("Member Exists", detail)


def forgotten(email: str) -> ApiError:
    # ibericode/mailchimp-for-wordpress#771 (POST /members).
    return untyped(
        "Forgotten Email Not Subscribed",
        f"{email} was permanently deleted and cannot be re-imported. The contact must "
        "re-subscribe to get back on the list.",
    )


def compliance(email: str) -> ApiError:
    # ibericode/mailchimp-for-wordpress#798 (PATCH).
    return untyped(
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


def missing_status() -> ApiError:
    return invalid([{"field": "status", "message": "Schema describes enum, NULL found instead"}])
