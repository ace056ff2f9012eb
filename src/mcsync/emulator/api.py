"""The Marketing API v3 routes under /3.0 (handlers only; the pipeline is in gate.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, Route

from . import rules
from .errors import ApiError, glossary_error, not_found
from .gate import ApiCall, Handler, api_endpoint
from .runtime import Emulator
from .state import STATUSES, Member
from .views import list_json, member_json, member_template, project, tag_json

MAX_COUNT = 1000


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return JSONResponse(body, status_code=status)


def _no_content() -> Response:
    # Mailchimp's 204s carry a JSON content type and an empty body.
    return Response(b"", status_code=204, media_type="application/json; charset=utf-8")


def _paging(call: ApiCall) -> tuple[int, int]:
    q = call.request.query_params
    try:
        count, offset = int(q.get("count", "10")), int(q.get("offset", "0"))
    except ValueError:
        raise ApiError(400, "Invalid Resource", "count and offset must be integers.") from None
    if count < 0 or offset < 0:
        raise ApiError(400, "Invalid Resource", "count and offset must be >= 0.")
    # Above the maximum Mailchimp serves 1000, it does not refuse: thorning/node-mailchimp#61
    # (count 3000 -> 1000 records), brandonseydel/MailChimp.Net#414.
    return min(count, MAX_COUNT), offset


def _projected(call: ApiCall, body: dict[str, Any], template: dict[str, Any]) -> Response:
    q = call.request.query_params
    return _json(project(body, template, q.get("fields"), q.get("exclude_fields")))


def _time(value: str) -> float:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ApiError(400, "Invalid Resource", f"Invalid date-time: {value}") from None


async def ping(call: ApiCall) -> Response:
    return _json({"health_status": "Everything's Chimpy!"})


async def root(call: ApiCall) -> Response:
    a = call.account
    total = sum(
        1 for aud in a.audiences.values() for m in aud.members.values() if m.status == "subscribed"
    )
    return _json(
        {
            "account_id": a.account_id,
            "login_id": str(a.login_id),
            "account_name": a.account_name,
            "email": a.login_email,
            "first_name": "",
            "last_name": "",
            "username": a.login_email,
            "avatar_url": "",
            "role": "owner",
            "member_since": a.member_since,
            "pricing_plan_type": "monthly",
            "first_payment": "",
            "account_timezone": "UTC",
            "account_industry": "",
            "contact": {"company": a.account_name},
            "pro_enabled": False,
            "last_login": "",
            "total_subscribers": total,
            "industry_stats": {},
            "_links": [],
        }
    )


async def get_lists(call: ApiCall) -> Response:
    count, offset = _paging(call)
    lists = [list_json(call.account, a) for a in call.account.audiences.values()]
    body = {
        "lists": lists[offset : offset + count],
        "total_items": len(lists),
        "constraints": {
            "may_create": True,
            "max_instances": 0,
            "current_total_instances": len(lists),
        },
        "_links": [],
    }
    template = {**body, "lists": lists[:1]}
    return _projected(call, body, template)


async def get_list(call: ApiCall) -> Response:
    body = list_json(call.account, call.audience())
    return _projected(call, body, body)


async def get_members(call: ApiCall) -> Response:
    audience = call.audience()
    count, offset = _paging(call)
    q = call.request.query_params
    status = q.get("status")
    if status is not None and status not in STATUSES:
        raise ApiError(400, "Invalid Resource", f"Invalid status: {status}")
    since = _time(q["since_last_changed"]) if "since_last_changed" in q else None
    before = _time(q["before_last_changed"]) if "before_last_changed" in q else None

    def wanted(m: Member) -> bool:
        # Without a status filter archived members are left out (strict choice, unverified).
        if (m.status != status) if status else (m.status == "archived"):
            return False
        if since is not None and m.last_changed_at < since:
            return False
        return before is None or m.last_changed_at < before

    matched = [m for m in audience.members.values() if wanted(m)]
    page = [member_json(audience, m) for m in matched[offset : offset + count]]
    body = {"members": page, "list_id": audience.id, "total_items": len(matched), "_links": []}
    template = {**body, "members": [member_template(audience)]}
    return _projected(call, body, template)


def _policy(call: ApiCall) -> rules.Policy:
    emu = call.emulator
    return rules.Policy(
        signup_limited=emu.store.signup_limited,
        batch_status_if_new_unarchives=emu.options.batch_status_if_new_unarchives,
    )


def _member(call: ApiCall) -> Member:
    member = call.audience().find(call.request.path_params["key"])
    if member is None:
        raise not_found()
    return member


async def get_member(call: ApiCall) -> Response:
    audience = call.audience()
    body = member_json(audience, _member(call))
    return _projected(call, body, {**member_template(audience), **body})


async def put_member(call: ApiCall) -> Response:
    return _upsert(call, patch=False)


async def patch_member(call: ApiCall) -> Response:
    return _upsert(call, patch=True)


def _upsert(call: ApiCall, *, patch: bool) -> Response:
    audience = call.audience()
    member = rules.put_or_patch(
        audience,
        call.request.path_params["key"],
        call.body,
        patch=patch,
        skip_merge_validation=call.flag("skip_merge_validation"),
        policy=_policy(call),
    )
    return _json(member_json(audience, member))


async def post_member(call: ApiCall) -> Response:
    audience = call.audience()
    member = rules.post_member(
        audience,
        call.body,
        skip_merge_validation=call.flag("skip_merge_validation"),
        policy=_policy(call),
    )
    return _json(member_json(audience, member))


async def delete_member(call: ApiCall) -> Response:
    rules.delete_member(call.audience(), call.request.path_params["key"])
    return _no_content()


async def delete_permanent(call: ApiCall) -> Response:
    rules.delete_permanent(call.audience(), call.request.path_params["key"])
    return _no_content()


async def get_tags(call: ApiCall) -> Response:
    audience = call.audience()
    count, offset = _paging(call)
    tags = tag_json(audience, _member(call))
    body = {"tags": tags[offset : offset + count], "total_items": len(tags), "_links": []}
    template = {**body, "tags": [{"id": 0, "name": "", "date_added": ""}]}
    return _projected(call, body, template)


async def post_tags(call: ApiCall) -> Response:
    rules.post_tags(call.audience(), call.request.path_params["key"], call.body)
    return _no_content()


async def batch(call: ApiCall) -> Response:
    audience = call.audience()
    new, updated, errors = rules.batch_subscribe(
        audience,
        call.body,
        skip_merge_validation=call.flag("skip_merge_validation"),
        skip_duplicate_check=call.flag("skip_duplicate_check"),
        policy=_policy(call),
    )
    body = {
        "new_members": [member_json(audience, m) for m in new],
        "updated_members": [member_json(audience, m) for m in updated],
        "errors": errors,
        "total_created": len(new),
        "total_updated": len(updated),
        "error_count": len(errors),
        "_links": [],
    }
    # Partial responses apply to this answer too: Mailchimp's API docs ("Methods and
    # parameters", partial responses) give `fields`/`exclude_fields` for any response, in dot
    # notation through lists (e.g. new_members.id). mcsync asks for the few member fields it
    # reads, which keeps a 500-member answer small.
    member = member_template(audience)
    error = {"email_address": "", "error": "", "error_code": "", "field": "", "field_message": ""}
    template = {**body, "new_members": [member], "updated_members": [member], "errors": [error]}
    return _projected(call, body, template)


def api_routes(emu: Emulator) -> list[BaseRoute]:
    m = "/3.0/lists/{list_id}/members/{key}"
    table: list[tuple[str, Handler, list[str], bool]] = [
        ("/3.0/ping", ping, ["GET"], False),
        ("/3.0/", root, ["GET"], False),
        ("/3.0", root, ["GET"], False),
        ("/3.0/lists", get_lists, ["GET"], False),
        ("/3.0/lists/{list_id}", get_list, ["GET"], False),
        ("/3.0/lists/{list_id}", batch, ["POST"], True),
        ("/3.0/lists/{list_id}/members", get_members, ["GET"], False),
        ("/3.0/lists/{list_id}/members", post_member, ["POST"], False),
        (m, get_member, ["GET"], False),
        (m, put_member, ["PUT"], False),
        (m, patch_member, ["PATCH"], False),
        (m, delete_member, ["DELETE"], False),
        (m + "/tags", get_tags, ["GET"], False),
        (m + "/tags", post_tags, ["POST"], False),
        (m + "/actions/delete-permanent", delete_permanent, ["POST"], False),
    ]
    routes: list[BaseRoute] = [
        Route(path, api_endpoint(emu, handler, batch=is_batch), methods=methods)
        for path, handler, methods, is_batch in table
    ]

    async def unknown(call: ApiCall) -> Response:
        # A path that exists with another method is 405, anything else 404, like Mailchimp.
        scope = dict(call.request.scope)
        if any(r.matches(scope)[0] == Match.PARTIAL for r in routes):
            raise glossary_error("MethodNotAllowed")
        raise not_found()

    fallback = Route(
        "/3.0/{rest:path}",
        api_endpoint(emu, unknown),
        methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
    )
    return [*routes, fallback]
