"""Async client for the Mailchimp Marketing API v3 (the subset mcsync uses).

One ``httpx.AsyncClient`` (pooled, explicit timeouts), no retries (the worker owns retries and
backoff), typed results, and every failure raised as a :mod:`mcsync.mailchimp.errors` class.

Every call is logged here and only here: one ``mailchimp_call`` line with ``op``, ``status``,
``outcome`` (see :func:`~mcsync.mailchimp.errors.call_outcome`), ``duration_ms`` and the
caller's context (e.g. ``user_id``); never the token, never a body or an email address. An
optional observer sees the same (op, outcome, seconds), for metrics.

:class:`ClientFactory` is the one place a client is made from settings (worker, Sync Now,
verify, web); it builds an account's URL with :func:`mcsync.mailchimp.endpoints.api_base`,
which checks the dc first.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypedDict, Unpack
from urllib.parse import quote

import httpx
import structlog

from mcsync.emails import subscriber_hash
from mcsync.logging import without_addresses
from mcsync.mailchimp.endpoints import api_base

if TYPE_CHECKING:  # the settings import mcsync.mailchimp.endpoints: no cycle at run time
    from mcsync.config import Settings
from mcsync.mailchimp.errors import (
    MailchimpError,
    NotFoundError,
    TransientError,
    call_outcome,
    error_from_response,
)
from mcsync.mailchimp.models import (
    Audience,
    BatchMember,
    BatchResult,
    Member,
    MembersPage,
)

log = structlog.get_logger("mcsync.mailchimp")

# Sees every call: (op, outcome, seconds). The worker feeds its metrics with it.
CallObserver = Callable[[str, str, float], None]

MAX_PAGE = 1000
MAX_BATCH = 500
# What mcsync reads of a batch subscribe's answer (BatchResult: each member's id, address and
# status; the errors; the totals). Asking for only these keeps a 500-member answer ~20x smaller
# to send and to parse; a server that ignored `fields` would still answer in the same shape.
BATCH_ANSWER_FIELDS = ",".join(
    [
        *(
            f"{part}.{f}"
            for part in ("new_members", "updated_members")
            for f in ("id", "email_address", "status")
        ),
        "errors",
        "total_created",
        "total_updated",
        "error_count",
    ]
)


class MemberQuery(TypedDict, total=False):
    """Which members a listing returns: by `status`, with only `fields` (Mailchimp's names)."""

    status: str | None
    fields: Sequence[str] | None


# Mailchimp allows 10 simultaneous connections per user; never open more than that per pool.
DEFAULT_LIMITS = httpx.Limits(max_connections=10, max_keepalive_connections=10, keepalive_expiry=30)


# An address inside Mailchimp's error text ("x@y.com looks fake or invalid"): logs name
# members by a hash prefix only, never by their email.
def error_text(error: BaseException) -> str:
    """A failed call's error as a log may carry it: Mailchimp's title and detail (credentials
    are cut out by MailchimpError itself and again by the log's redaction), with every email
    address replaced, at most 300 characters."""
    return without_addresses(str(error))[:300]


def log_call(
    op: str,
    method: str,
    *,
    status: int | None,
    outcome: str,
    started: float,
    error: BaseException | None = None,
    **keys: Any,
) -> float:
    """Log one finished Mailchimp call (API or login server); returns its duration in seconds.

    A success is `info`; a failure `warning` (retried, throttled, or one contact refused) or
    `error` (the token refused: the connection stops), with its HTTP status (None only when no
    response came: a timeout, a network error) and its redacted `error` text."""
    elapsed = time.perf_counter() - started
    if error is not None:
        status = status if status is not None else getattr(error, "status", None)
        keys["error"] = error_text(error)
    level = "info" if error is None else "error" if outcome == "connection_error" else "warning"
    getattr(log, level)(
        "mailchimp_call",
        op=op,
        method=method,
        status=status,
        outcome=outcome,
        duration_ms=round(elapsed * 1000, 1),
        **keys,
    )
    return elapsed


def make_timeout(timeout: float) -> httpx.Timeout:
    """Explicit connect/read/write/pool timeouts from one overall budget."""
    return httpx.Timeout(
        connect=min(10.0, timeout), read=timeout, write=timeout, pool=min(10.0, timeout)
    )


def make_http_client(
    timeout: float = 30.0, limits: httpx.Limits | None = None
) -> httpx.AsyncClient:
    """A pooled AsyncClient suitable for sharing across many MailchimpClient instances."""
    return httpx.AsyncClient(
        timeout=make_timeout(timeout),
        limits=limits or DEFAULT_LIMITS,
        headers={"Accept": "application/json", "User-Agent": "mcsync"},
        follow_redirects=False,
    )


def _seg(value: str) -> str:
    return quote(value, safe="")


def _as_hash(email_or_hash: str) -> str:
    return subscriber_hash(email_or_hash) if "@" in email_or_hash else email_or_hash.lower()


class MailchimpClient:
    """One Mailchimp account (one token). Share ``http`` across accounts to pool connections."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        http: httpx.AsyncClient | None = None,
        timeout: float = 30.0,
        observer: CallObserver | None = None,
        log_context: Mapping[str, str] | None = None,
    ) -> None:
        self._observer = observer
        self._log_context = dict(log_context or {})
        self._base = base_url.rstrip("/")
        self._token = token
        self._timeout = make_timeout(timeout)
        self._owns_http = http is None
        self._http = http if http is not None else make_http_client(timeout)

    def __repr__(self) -> str:
        return f"MailchimpClient({self._base!r})"

    @property
    def base_url(self) -> str:
        return self._base

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> MailchimpClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- transport -------------------------------------------------------------------------

    async def _request(
        self,
        op: str,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        want_json: bool = True,
        **log_keys: Any,
    ) -> Any:
        """Send one request; the decoded JSON body (None when `want_json` is False)."""
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Accept": "application/json",
        }
        started = time.perf_counter()
        status: int | None = None
        failure: MailchimpError | None = None
        request_id: str | None = None
        try:
            try:
                response = await self._http.request(
                    method,
                    self._base + path,
                    params=params,
                    json=json,
                    headers=headers,
                    timeout=self._timeout,
                )
            except httpx.TimeoutException as exc:
                raise TransientError("Timeout", type(exc).__name__) from None
            except httpx.TransportError as exc:
                raise TransientError("Network error", type(exc).__name__) from None
            status = response.status_code
            request_id = response.headers.get("X-Request-Id")
            if status >= 400:
                raise error_from_response(response)
            return self._json(response) if want_json else None
        except MailchimpError as exc:
            failure = exc
            raise
        finally:
            if "member" in log_keys:  # a prefix tells members apart in a log; no more needed
                log_keys["member"] = str(log_keys["member"])[:12]
            outcome = call_outcome(failure)
            elapsed = log_call(
                op,
                method,
                status=status,
                outcome=outcome,
                started=started,
                error=failure,
                request_id=request_id,
                **self._log_context,
                **log_keys,
            )
            if self._observer is not None:
                self._observer(op, outcome, elapsed)

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            # A 2xx that isn't JSON is a proxy or edge glitch, not a verdict: try again later.
            raise TransientError(
                "Unparseable response",
                f"{response.status_code} with a non-JSON body",
                status=response.status_code,
                request_id=response.headers.get("X-Request-Id"),
            ) from None

    async def _member_request(
        self,
        op: str,
        method: str,
        list_id: str,
        email_hash: str,
        *,
        json: Any = None,
        suffix: str = "",
    ) -> Any:
        """A request on one member (`/lists/{list}/members/{hash}` + `suffix`)."""
        return await self._request(
            op,
            method,
            f"/lists/{_seg(list_id)}/members/{_seg(email_hash)}{suffix}",
            json=json,
            want_json=method in ("GET", "PUT", "PATCH"),
            list_id=list_id,
            member=email_hash,
        )

    # -- account ---------------------------------------------------------------------------

    async def ping(self) -> None:
        """GET /ping: the token works."""
        await self._request("ping", "GET", "/ping", want_json=False)

    async def get_account(self) -> dict[str, Any]:
        """GET /: the account's details."""
        data = await self._request("get_account", "GET", "/")
        return data if isinstance(data, dict) else {}

    async def list_audiences(self) -> list[Audience]:
        """Every audience of the account (all pages)."""
        out: list[Audience] = []
        offset = 0
        while True:
            data = await self._request(
                "list_audiences", "GET", "/lists", params={"count": MAX_PAGE, "offset": offset}
            )
            lists = data.get("lists") or []
            out.extend(Audience.model_validate(item) for item in lists)
            offset += len(lists)
            total = int(data.get("total_items") or 0)
            if not lists or offset >= total:
                return out

    async def get_audience(self, list_id: str) -> Audience:
        """One audience; NotFoundError when it is gone (the health probe's cheap call)."""
        data = await self._request(
            "get_audience", "GET", f"/lists/{_seg(list_id)}", list_id=list_id
        )
        return Audience.model_validate(data)

    # -- members ---------------------------------------------------------------------------

    async def get_member(self, list_id: str, email_or_hash: str) -> Member | None:
        """The member, or None on 404 (never added, or permanently deleted)."""
        try:
            data = await self._member_request("get_member", "GET", list_id, _as_hash(email_or_hash))
        except NotFoundError:
            return None
        return Member.model_validate(data)

    async def upsert_member(
        self,
        list_id: str,
        email: str,
        *,
        merge_fields: dict[str, Any],
        status_if_new: str,
        status: str | None = None,
    ) -> Member:
        """PUT on md5(email). Never sends tags: Mailchimp ignores them for existing members."""
        email_hash = subscriber_hash(email)
        body: dict[str, Any] = {
            "email_address": email.strip(),
            "status_if_new": status_if_new,
            "merge_fields": merge_fields,
        }
        if status is not None:
            body["status"] = status
        data = await self._member_request("upsert_member", "PUT", list_id, email_hash, json=body)
        return Member.model_validate(data)

    async def change_member_email(
        self, list_id: str, old_hash: str, new_email: str, *, merge_fields: dict[str, Any]
    ) -> Member:
        """PATCH the OLD hash with the new address (a PUT on the new hash would duplicate)."""
        body: dict[str, Any] = {"email_address": new_email.strip()}
        if merge_fields:
            body["merge_fields"] = merge_fields
        data = await self._member_request(
            "change_member_email", "PATCH", list_id, _as_hash(old_hash), json=body
        )
        return Member.model_validate(data)

    async def update_member_tags(
        self,
        list_id: str,
        email_hash: str,
        *,
        active: Sequence[str] = (),
        inactive: Sequence[str] = (),
        is_syncing: bool = True,
    ) -> None:
        """POST .../tags with explicit active/inactive tags; no call when both are empty."""
        if not active and not inactive:
            return
        tags = [{"name": n, "status": "active"} for n in active] + [
            {"name": n, "status": "inactive"} for n in inactive
        ]
        await self._member_request(
            "update_member_tags",
            "POST",
            list_id,
            _as_hash(email_hash),
            json={"tags": tags, "is_syncing": is_syncing},
            suffix="/tags",
        )

    async def archive_member(self, list_id: str, email_hash: str) -> None:
        """DELETE = archive (reversible). Raises NotFoundError when the member is missing."""
        await self._member_request("archive_member", "DELETE", list_id, _as_hash(email_hash))

    async def batch_subscribe(
        self,
        list_id: str,
        members: Sequence[BatchMember],
        *,
        update_existing: bool = True,
    ) -> BatchResult:
        """POST /lists/{id} with at most 500 members. Never sends sync_tags."""
        if len(members) > MAX_BATCH:
            raise ValueError(
                f"batch_subscribe takes at most {MAX_BATCH} members, got {len(members)}"
            )
        payload: list[dict[str, Any]] = []
        for m in members:
            item: dict[str, Any] = {
                "email_address": m.email_address.strip(),
                "status_if_new": m.status_if_new,
                "merge_fields": m.merge_fields,
            }
            if m.tags:
                item["tags"] = list(m.tags)
            payload.append(item)
        data = await self._request(
            "batch_subscribe",
            "POST",
            f"/lists/{_seg(list_id)}",
            params={"fields": BATCH_ANSWER_FIELDS},
            json={"members": payload, "update_existing": update_existing},
            list_id=list_id,
            members=len(payload),
        )
        result = BatchResult.model_validate(data)
        if "error_count" not in data:
            result.error_count = len(result.errors)
        return result

    async def list_members(
        self, list_id: str, *, count: int = 1000, offset: int = 0, **query: Unpack[MemberQuery]
    ) -> MembersPage:
        """One page of members (at most 1000), with only `fields` (and the ids) when given."""
        if not 0 <= count <= MAX_PAGE:
            raise ValueError(f"count must be between 0 and {MAX_PAGE}")
        params: dict[str, Any] = {"count": count, "offset": offset}
        status, fields = query.get("status"), query.get("fields")
        if status is not None:
            params["status"] = status
        if fields:
            wanted = ["members.id", "members.email_address", "members.status", "total_items"]
            for f in fields:
                name = f if f.startswith("members.") or f == "total_items" else f"members.{f}"
                if name not in wanted:
                    wanted.append(name)
            params["fields"] = ",".join(wanted)
        data = await self._request(
            "list_members",
            "GET",
            f"/lists/{_seg(list_id)}/members",
            params=params,
            list_id=list_id,
            offset=offset,
        )
        return MembersPage.model_validate(data)

    async def iter_pages(
        self, list_id: str, *, offset: int = 0, page_size: int = 1000, **query: Unpack[MemberQuery]
    ) -> AsyncIterator[MembersPage]:
        """Every page of members from `offset` on, paging with count/offset until total_items
        is reached (the last page may be empty)."""
        while True:
            page = await self.list_members(list_id, count=page_size, offset=offset, **query)
            yield page
            offset += len(page.members)
            if not page.members or offset >= page.total_items:
                return

    async def iter_members(
        self, list_id: str, *, page_size: int = 1000, status: str | None = None
    ) -> AsyncIterator[Member]:
        """Every member, page by page (see `iter_pages`)."""
        async for page in self.iter_pages(list_id, page_size=page_size, status=status):
            for member in page.members:
                yield member


@dataclass(frozen=True)
class ClientFactory:
    """Makes the client of one Mailchimp account: the one place a client is built.

    `api_url` is the configured API base (``{dc}`` is filled per account); share `http` to pool
    connections across accounts."""

    api_url: str
    timeout: float = 30.0
    http: httpx.AsyncClient | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, http: httpx.AsyncClient | None = None
    ) -> ClientFactory:
        return cls(settings.mailchimp_api_url, settings.mcsync_http_timeout, http)

    def base_url(self, dc: str) -> str:
        return api_base(self.api_url, dc)

    def client(
        self,
        dc: str,
        token: str,
        *,
        observer: CallObserver | None = None,
        log_context: Mapping[str, str] | None = None,
    ) -> MailchimpClient:
        """A client for the account in data center `dc`, calling with `token`."""
        return MailchimpClient(
            self.base_url(dc),
            token,
            http=self.http,
            timeout=self.timeout,
            observer=observer,
            log_context=log_context,
        )
