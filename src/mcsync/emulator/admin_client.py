"""A small synchronous client for the emulator's admin API (used by tests, demo, benchmarks)."""

from __future__ import annotations

import functools
import ssl
from typing import Any

import httpx


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    # Building a context costs ~50 ms; tests make an admin client per emulator, so share one.
    return httpx.create_ssl_context()


class EmulatorAdmin:
    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url + "/_emulator", timeout=timeout, verify=_ssl_context()
        )

    def close(self) -> None:
        self._http.close()

    def _call(
        self, method: str, path: str, json: Any = None, params: dict[str, str] | None = None
    ) -> Any:
        response = self._http.request(method, path, json=json, params=params)
        if response.status_code >= 400:
            raise RuntimeError(
                f"emulator admin {method} {path}: {response.status_code} {response.text}"
            )
        return response.json()

    def create_account(
        self,
        dc: str = "us1",
        account_name: str = "Emulated Account",
        access_token: str | None = None,
        audiences: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Audiences default to one with id "list1" (FNAME, LNAME, PHONE, ADDRESS)."""
        body: dict[str, Any] = {
            "dc": dc,
            "account_name": account_name,
            "audiences": audiences
            if audiences is not None
            else [{"id": "list1", "name": "Audience"}],
        }
        if access_token is not None:
            body["access_token"] = access_token
        return self._call("POST", "/accounts", body)

    def state(self, audience_id: str | None = None, requests: bool = True) -> dict[str, Any]:
        params = {"requests": "true" if requests else "false"}
        if audience_id is not None:
            params["audience_id"] = audience_id
        return self._call("GET", "/state", params=params)

    def members(self, audience_id: str) -> list[dict[str, Any]]:
        """That audience's members, archived ones included (forgotten ones are gone)."""
        for account in self.state(audience_id, requests=False)["accounts"]:
            for audience in account["audiences"]:
                if audience["id"] == audience_id:
                    return audience["members"]
        raise KeyError(audience_id)

    def is_up(self) -> bool:
        try:
            self._http.get("/limits", timeout=1.0)
        except httpx.TransportError:
            return False
        return True

    def requests(self) -> list[dict[str, Any]]:
        return self._call("GET", "/requests")["requests"]

    def add_fault(self, **spec: Any) -> dict[str, Any]:
        return self._call("POST", "/faults", spec)

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def set_latency(self, per_call_ms: float = 0, per_member_ms: float = 0) -> None:
        self._call("POST", "/latency", {"per_call_ms": per_call_ms, "per_member_ms": per_member_ms})

    def set_limits(self, **limits: Any) -> dict[str, Any]:
        return self._call("POST", "/limits", limits)

    def add_member(
        self,
        list_id: str,
        email: str,
        status: str = "subscribed",
        merge_fields: dict[str, Any] | None = None,
        tags: list[str] | None = None,
    ) -> dict[str, Any]:
        return self._call(
            "POST",
            "/members/add",
            {
                "list_id": list_id,
                "email_address": email,
                "status": status,
                "merge_fields": merge_fields or {},
                "tags": tags or [],
            },
        )

    def unsubscribe(self, list_id: str, email: str) -> dict[str, Any]:
        return self._call(
            "POST", "/members/unsubscribe", {"list_id": list_id, "email_address": email}
        )

    def archive(self, list_id: str, email: str) -> dict[str, Any]:
        return self._call("POST", "/members/archive", {"list_id": list_id, "email_address": email})

    def tag(self, list_id: str, email: str, tag: str) -> dict[str, Any]:
        return self._call(
            "POST", "/members/tag", {"list_id": list_id, "email_address": email, "tag": tag}
        )

    def forget(self, list_id: str, email: str) -> None:
        self._call("POST", "/members/forget", {"list_id": list_id, "email_address": email})

    def limit_signups(self, email: str, limited: bool = True) -> dict[str, Any]:
        """Make Mailchimp refuse (limited=False: accept again) this person's signups."""
        return self._call(
            "POST", "/members/signup-limit", {"email_address": email, "limited": limited}
        )

    def options(self) -> dict[str, Any]:
        return self._call("GET", "/options")

    def set_options(self, **options: Any) -> dict[str, Any]:
        """E.g. set_options(batch_status_if_new_unarchives=True); reset restores the defaults."""
        return self._call("POST", "/options", options)

    def revoke(self, access_token: str) -> None:
        self._call("POST", "/tokens/revoke", {"access_token": access_token})

    def register_oauth_client(
        self, client_id: str, client_secret: str, redirect_uri: str | None = None
    ) -> dict[str, Any]:
        return self._call(
            "POST",
            "/oauth/clients",
            {"client_id": client_id, "client_secret": client_secret, "redirect_uri": redirect_uri},
        )

    def reset(self, seed: int | None = None) -> None:
        self._call("POST", "/reset", {} if seed is None else {"seed": seed})
