"""The admin API under /_emulator: our own stable JSON contract (docs/emulator.md, "Admin API").

Tests, the demo and benchmarks use it to set up accounts, look at state, inject faults, and act
as a marketer on Mailchimp's side.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from . import rules, validation
from .faults import FaultError
from .runtime import Emulator, OAuthClient
from .state import Account, Audience, Member, subscriber_hash


class AdminError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _member_state(audience: Audience, m: Member) -> dict[str, Any]:
    return {
        "id": m.id,
        "email_address": m.email_address,
        "status": m.status,
        "merge_fields": dict(m.merge_fields),
        "tags": [{"name": t.name} for t in audience.member_tags(m)],
        "contact_id": m.contact_id,
        "source": m.source,
        "email_type": m.email_type,
        "last_changed_at": m.last_changed_at,
    }


def audience_json(audience: Audience, *, members: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": audience.id,
        "name": audience.name,
        "double_optin": audience.double_optin,
        "phone_format": audience.phone_format,
        "required_fields": [t for t, f in audience.merge_fields.items() if f.required],
        "merge_fields": [
            {
                "tag": f.tag,
                "type": f.type,
                "name": f.name,
                "required": f.required,
                "choices": f.choices,
            }
            for f in audience.merge_fields.values()
        ],
        "forgotten_count": len(audience.forgotten),
    }
    if members:
        out["members"] = [_member_state(audience, m) for m in audience.members.values()]
    return out


def account_json(
    account: Account, *, members: bool, audience_id: str | None = None
) -> dict[str, Any]:
    return {
        "dc": account.dc,
        "account_name": account.account_name,
        "access_token": account.access_token,
        "account_id": account.account_id,
        "login_email": account.login_email,
        "audiences": [
            audience_json(a, members=members)
            for a in account.audiences.values()
            if audience_id is None or a.id == audience_id
        ],
    }


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise AdminError(400, "body is not JSON") from None
    if not isinstance(body, dict):
        raise AdminError(400, "body must be a JSON object")
    return body


def _locate(emu: Emulator, body: dict[str, Any]) -> tuple[Audience, Member]:
    found = emu.store.audience(str(body.get("list_id")))
    if found is None:
        raise AdminError(404, f"no audience {body.get('list_id')!r}")
    audience = found[1]
    member = audience.members.get(subscriber_hash(str(body.get("email_address", ""))))
    if member is None:
        raise AdminError(404, f"no member {body.get('email_address')!r}")
    return audience, member


AdminHandler = Callable[[Emulator, Request, dict[str, Any]], Any]


async def create_account(emu: Emulator, request: Request, body: dict[str, Any]) -> Any:
    try:
        account = emu.create_account(body)
    except (ValueError, KeyError, TypeError) as exc:
        raise AdminError(409 if isinstance(exc, ValueError) else 400, str(exc)) from None
    return account_json(account, members=False)


async def state(emu: Emulator, request: Request, body: dict[str, Any]) -> Any:
    q = request.query_params
    audience_id = q.get("audience_id")
    accounts = [a for a in emu.store.accounts if audience_id is None or audience_id in a.audiences]
    out: dict[str, Any] = {
        "accounts": [account_json(a, members=True, audience_id=audience_id) for a in accounts],
    }
    if q.get("requests", "true").lower() not in ("false", "0"):
        out["requests"] = _requests(emu)
    return out


def _requests(emu: Emulator) -> list[dict[str, Any]]:
    return [
        {"method": r.method, "path": r.path, "status": r.status, "at": r.at}
        for r in emu.store.requests
    ]


async def requests_log(emu: Emulator, request: Request, body: dict[str, Any]) -> Any:
    return {"requests": _requests(emu)}


async def add_fault(emu: Emulator, request: Request, body: dict[str, Any]) -> Any:
    try:
        return emu.faults.add(body).to_json()
    except FaultError as exc:
        raise AdminError(400, str(exc)) from None


async def list_faults(emu: Emulator, request: Request, body: dict[str, Any]) -> Any:
    return {"faults": [f.to_json() for f in emu.faults.items]}


async def clear_faults(emu: Emulator, request: Request, body: dict[str, Any]) -> Any:
    emu.faults.clear()
    return {"faults": []}


def _ms(body: dict[str, Any], key: str, default: float) -> float:
    value = body.get(key, default)
    if not isinstance(value, int | float) or value < 0:
        raise AdminError(400, f"{key} must be a non-negative number")
    return float(value)


async def set_latency(emu: Emulator, request: Request, body: dict[str, Any]) -> Any:
    limits = emu.limits
    limits.per_call_ms = _ms(body, "per_call_ms", limits.per_call_ms)
    limits.per_member_ms = _ms(body, "per_member_ms", limits.per_member_ms)
    return limits.to_json()


async def get_limits(emu: Emulator, request: Request, body: dict[str, Any]) -> Any:
    return emu.limits.to_json()


async def set_limits(emu: Emulator, request: Request, body: dict[str, Any]) -> Any:
    limits = emu.limits
    for key in ("max_in_flight", "bodiless_429_every"):
        if key in body:
            if not isinstance(body[key], int) or body[key] < 0:
                raise AdminError(400, f"{key} must be a non-negative integer")
            setattr(limits, key, body[key])
    return await set_latency(emu, request, body)


async def add_member(emu: Emulator, request: Request, body: dict[str, Any]) -> Any:
    """A contact that reached Mailchimp some other way (a form, an import): no merge checks."""
    found = emu.store.audience(str(body.get("list_id")))
    if found is None:
        raise AdminError(404, f"no audience {body.get('list_id')!r}")
    audience = found[1]
    email = str(body.get("email_address", ""))
    if validation.email_problem(email) == "Please provide a valid email address.":
        raise AdminError(400, "invalid email address")
    h = subscriber_hash(email)
    if h in audience.members:
        raise AdminError(409, "member exists")
    status = str(body.get("status", "subscribed"))
    if status not in (*rules.WRITABLE, "archived"):
        raise AdminError(400, "bad status")
    fields = {t: "" for t in audience.merge_fields}
    fields.update(
        {k: v for k, v in (body.get("merge_fields") or {}).items() if k in audience.merge_fields}
    )
    member = Member(
        id=h,
        email_address=email,
        status=status,
        merge_fields=fields,
        source=str(body.get("source", "Admin Add")),
        # Arriving unsubscribed or cleaned from elsewhere is the person's choice or a bounce.
        compliance_hold=status in ("unsubscribed", "cleaned"),
    )
    audience.forgotten.discard(h)  # a contact re-subscribing by a form may come back
    rules.add_tags(audience, member, [str(t) for t in body.get("tags") or []])
    audience.add(member)
    return _member_state(audience, member)


async def unsubscribe(emu: Emulator, request: Request, body: dict[str, Any]) -> Any:
    audience, member = _locate(emu, body)
    member.status, member.status_before_archive = "unsubscribed", ""
    member.compliance_hold = True  # the person's own unsubscribe: a compliance state
    member.unsubscribe_reason = str(body.get("reason", "N/A (Unsubscribed by the contact)"))
    member.touch()
    return _member_state(audience, member)


async def archive(emu: Emulator, request: Request, body: dict[str, Any]) -> Any:
    audience, member = _locate(emu, body)
    if member.status != "archived":
        rules.archive(member)
    return _member_state(audience, member)


async def tag(emu: Emulator, request: Request, body: dict[str, Any]) -> Any:
    audience, member = _locate(emu, body)
    if not isinstance(body.get("tag"), str) or not body["tag"].strip():
        raise AdminError(400, "tag must be a non-empty string")
    if rules.add_tags(audience, member, [body["tag"]]):
        member.touch()
    return _member_state(audience, member)


async def forget(emu: Emulator, request: Request, body: dict[str, Any]) -> Any:
    audience, member = _locate(emu, body)
    audience.forget(member)
    return {"list_id": audience.id, "email_address": member.email_address, "forgotten": True}


def _bool(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise AdminError(400, f"{key} must be true or false")
    return value


async def signup_limit(emu: Emulator, request: Request, body: dict[str, Any]) -> Any:
    """Mailchimp refuses (or stops refusing) this person's signups, on every list."""
    email = body.get("email_address")
    if not isinstance(email, str) or "@" not in email:
        raise AdminError(400, "email_address is required")
    limited = _bool(body, "limited", True)
    if limited:
        emu.store.signup_limited.add(email.lower())
    else:
        emu.store.signup_limited.discard(email.lower())
    return {"email_address": email, "limited": limited}


async def get_options(emu: Emulator, request: Request, body: dict[str, Any]) -> Any:
    return emu.options.to_json()


async def set_options(emu: Emulator, request: Request, body: dict[str, Any]) -> Any:
    known = set(emu.options.to_json())
    unknown = sorted(set(body) - known)
    if unknown:
        raise AdminError(400, f"unknown options: {', '.join(unknown)}")
    options = emu.options
    options.batch_status_if_new_unarchives = _bool(
        body, "batch_status_if_new_unarchives", options.batch_status_if_new_unarchives
    )
    return options.to_json()


async def revoke(emu: Emulator, request: Request, body: dict[str, Any]) -> Any:
    token = str(body.get("access_token", ""))
    if not any(a.access_token == token for a in emu.store.accounts):
        raise AdminError(404, "unknown access_token")
    emu.store.revoked.add(token)
    return {"access_token": token, "revoked": True}


async def oauth_client(emu: Emulator, request: Request, body: dict[str, Any]) -> Any:
    if not body.get("client_id") or not body.get("client_secret"):
        raise AdminError(400, "client_id and client_secret are required")
    client = OAuthClient(
        str(body["client_id"]),
        str(body["client_secret"]),
        str(body["redirect_uri"]) if body.get("redirect_uri") else None,
    )
    emu.oauth_clients[client.client_id] = client
    return {
        "client_id": client.client_id,
        "client_secret": client.client_secret,
        "redirect_uri": client.redirect_uri,
    }


async def reset(emu: Emulator, request: Request, body: dict[str, Any]) -> Any:
    seed = body.get("seed")
    emu.reset(int(seed) if seed is not None else None)
    return {"reset": True}


def _endpoint(emu: Emulator, handler: AdminHandler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            body = await _json_body(request)
            return JSONResponse(await handler(emu, request, body))
        except AdminError as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)

    return endpoint


def admin_routes(emu: Emulator) -> list[BaseRoute]:
    p = "/_emulator"
    table: list[tuple[str, AdminHandler, str]] = [
        ("/accounts", create_account, "POST"),
        ("/state", state, "GET"),
        ("/requests", requests_log, "GET"),
        ("/faults", add_fault, "POST"),
        ("/faults", list_faults, "GET"),
        ("/faults", clear_faults, "DELETE"),
        ("/latency", set_latency, "POST"),
        ("/latency", get_limits, "GET"),
        ("/limits", set_limits, "POST"),
        ("/limits", get_limits, "GET"),
        ("/members/add", add_member, "POST"),
        ("/members/unsubscribe", unsubscribe, "POST"),
        ("/members/archive", archive, "POST"),
        ("/members/tag", tag, "POST"),
        ("/members/forget", forget, "POST"),
        ("/members/signup-limit", signup_limit, "POST"),
        ("/options", set_options, "POST"),
        ("/options", get_options, "GET"),
        ("/tokens/revoke", revoke, "POST"),
        ("/oauth/clients", oauth_client, "POST"),
        ("/reset", reset, "POST"),
    ]
    return [Route(p + path, _endpoint(emu, h), methods=[method]) for path, h, method in table]
