"""The Marketing API v3 routes under /3.0 (handlers only; the pipeline is in gate.py)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, Route

from . import batch as batches
from . import described, rules
from .errors import glossary_error, invalid, not_found
from .gate import ApiCall, Handler, api_endpoint
from .runtime import Emulator
from .state import Member
from .views import list_json, member_json, member_template, project, tag_json

MAX_COUNT = 1000


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return JSONResponse(body, status_code=status)


def _no_content() -> Response:
    # Mailchimp's 204s carry a JSON content type and an empty body.
    return Response(b"", status_code=204, media_type="application/json; charset=utf-8")


def _paging(call: ApiCall) -> tuple[int, int]:
    q = call.request.query_params  # integers already (described.check_query)
    count, offset = int(q.get("count", "10")), int(q.get("offset", "0"))
    negative = [
        {"field": name, "message": "This value should be greater than or equal to 0."}
        for name, value in (("count", count), ("offset", offset))
        if value < 0
    ]
    if negative:
        raise invalid(negative)
    # Above the description's maximum (1000) Mailchimp serves 1000, it does not refuse (a
    # listed waiver): thorning/node-mailchimp#61 (count 3000 -> 1000 records),
    # brandonseydel/MailChimp.Net#414.
    return min(count, MAX_COUNT), offset


def _projected(call: ApiCall, body: dict[str, Any], template: dict[str, Any]) -> Response:
    q = call.request.query_params
    return _json(project(body, template, q.get("fields"), q.get("exclude_fields")))


def _time(q: Mapping[str, str], name: str) -> float | None:
    if name not in q:
        return None
    try:
        return datetime.fromisoformat(q[name].replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise invalid([{"field": name, "message": f"Invalid date-time: {q[name]}"}]) from None


async def ping(call: ApiCall) -> Response:
    return _json({"health_status": "Everything's Chimpy!"})


async def root(call: ApiCall) -> Response:
    a = call.account
    total = sum(aud.statuses.count("subscribed") for aud in a.audiences.values())
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
            # Date-times by the description; a real value rather than "" (the emulator's
            # accounts "paid" and "logged in" when they were created).
            "first_payment": a.member_since,
            "account_timezone": "UTC",
            "account_industry": "",
            "contact": {"company": a.account_name},
            "pro_enabled": False,
            "last_login": a.member_since,
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
    status = q.get("status")  # one of the description's statuses (described.check_query)
    since, before = _time(q, "since_last_changed"), _time(q, "before_last_changed")

    def in_time(m: Member) -> bool:
        if since is not None and m.last_changed_at < since:
            return False
        return before is None or m.last_changed_at < before

    # A status filter reads that status's members from the audience's index, not every member.
    # Without one, archived members are left out (strict choice, unverified).
    if status:
        candidates: Iterable[Member] = audience.statuses.members(status)
    else:
        candidates = (m for m in audience.members.values() if m.status != "archived")
    if since is None and before is None:
        if status:
            total = audience.statuses.count(status)
        else:
            total = len(audience.members) - audience.statuses.count("archived")
        matched = list(itertools.islice(candidates, offset + count))
    else:
        matched = [m for m in candidates if in_time(m)]
        total = len(matched)
    page = [member_json(audience, m) for m in matched[offset : offset + count]]
    body = {"members": page, "list_id": audience.id, "total_items": total, "_links": []}
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
    new, updated, errors = batches.batch_subscribe(
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


def described_call(op: str, handler: Handler) -> Handler:
    """`handler` behind the description's checks of its query and body (described.py).

    PUT's required fields (the address and a status) are waived when the member exists: a
    listed waiver, recorded by grouparoo/grouparoo (see rules.put_or_patch)."""

    async def run(call: ApiCall) -> Response:
        if "list_id" in call.request.path_params:
            call.audience()  # an unknown audience is 404 whatever the request says
        described.check_query(op, call.request.query_params)
        waive = False
        if op == "put_member":
            waive = call.audience().find(call.request.path_params["key"]) is not None
        described.check_body(op, call.body, waive_required=waive)
        return await handler(call)

    return run


def api_routes(emu: Emulator) -> list[BaseRoute]:
    m = "/3.0/lists/{list_id}/members/{key}"
    # (path, operation as described.py names it, handler, method)
    table: list[tuple[str, str, Handler, str]] = [
        ("/3.0/ping", "ping", ping, "GET"),
        ("/3.0/", "root", root, "GET"),
        ("/3.0", "root", root, "GET"),
        ("/3.0/lists", "get_lists", get_lists, "GET"),
        ("/3.0/lists/{list_id}", "get_list", get_list, "GET"),
        ("/3.0/lists/{list_id}", "batch_subscribe", batch, "POST"),
        ("/3.0/lists/{list_id}/members", "get_members", get_members, "GET"),
        ("/3.0/lists/{list_id}/members", "post_member", post_member, "POST"),
        (m, "get_member", get_member, "GET"),
        (m, "put_member", put_member, "PUT"),
        (m, "patch_member", patch_member, "PATCH"),
        (m, "delete_member", delete_member, "DELETE"),
        (m + "/tags", "get_tags", get_tags, "GET"),
        (m + "/tags", "post_tags", post_tags, "POST"),
        (m + "/actions/delete-permanent", "delete_permanent", delete_permanent, "POST"),
    ]
    routes: list[BaseRoute] = [
        Route(
            path,
            api_endpoint(emu, described_call(op, handler), batch=op == "batch_subscribe"),
            methods=[method],
        )
        for path, op, handler, method in table
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
