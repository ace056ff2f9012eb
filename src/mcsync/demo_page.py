"""The demo's own page: the app's side of `mcsync demo`, served only by the demo.

`mcsync web` never serves it. The demo adds these routes to the web app it runs: `GET /` is a
stand-in for the coaching app (the real widget, signed in as the demo's coach, and the coach's
contacts, editable), beside the Mailchimp audience as the emulator holds it. `/demo/*` is the
page's small JSON API: it reads and writes the app's `contacts` table as the app would (by
its column names), and reads the audience from the emulator's admin API. It listens on loopback
only and carries no authentication: it is a demo on one machine, never a deployment."""

from __future__ import annotations

import html
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse
from psycopg.rows import dict_row
from pydantic import BaseModel, Field

from mcsync import demo_store
from mcsync.emulator.admin_client import EmulatorAdmin
from mcsync.web.auth import make_user_token

PAGE = Path(__file__).resolve().parent / "web" / "templates" / "demo_page.html"
CONTACT_COLUMNS = ("first_name", "last_name", "email", "phone", "tags")


@dataclass(frozen=True)
class DemoSite:
    """What the page needs: the app's database, the coach, the emulator, the web's JWT secret."""

    database_url: str
    user_id: uuid.UUID
    emulator_url: str
    jwt_secret: str
    account_name: str


class ContactIn(BaseModel):
    first_name: str | None = Field(default=None, max_length=200)
    last_name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=50)
    tags: list[str] = Field(default_factory=list, max_length=50)

    def values(self) -> dict[str, Any]:
        """Blank strings as NULL (an emptied field means "none"), tags trimmed, no blanks."""
        out: dict[str, Any] = {
            k: (getattr(self, k) or "").strip() or None for k in CONTACT_COLUMNS if k != "tags"
        }
        out["tags"] = [t.strip() for t in self.tags if t.strip()]
        return out


def demo_router(site: DemoSite) -> APIRouter:
    """`GET /` and the page's `/demo/*` API, for `site`'s coach."""
    router = APIRouter(include_in_schema=False)
    admin = EmulatorAdmin(site.emulator_url)

    def db() -> psycopg.Connection[dict[str, Any]]:
        return psycopg.connect(site.database_url, autocommit=True, row_factory=dict_row)

    @router.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        config = {
            "token": make_user_token(site.jwt_secret, site.user_id, ttl=12 * 3600),
            "account": site.account_name,
        }
        body = PAGE.read_text().replace(
            "/*DEMO_CONFIG*/", f"const DEMO = {json.dumps(config)};"
        ).replace("{{ACCOUNT}}", html.escape(site.account_name))
        return HTMLResponse(body, headers={"Cache-Control": "no-store"})

    @router.get("/demo/state")
    def state() -> dict[str, Any]:
        with db() as conn:
            contacts = demo_store.contacts_shown(conn, site.user_id)
            connection = demo_store.demo_connection(conn, site.user_id)
        audience = None
        members: list[dict[str, Any]] = []
        if connection and connection["audience_id"]:
            audience = {"id": connection["audience_id"], "name": connection["audience_name"]}
            members = [_member(m) for m in admin.members(connection["audience_id"])]
            members.sort(key=lambda m: m["email"])
        return {
            "contacts": [{**c, "id": str(c["id"])} for c in contacts],
            "connected": connection is not None,
            "sync_status": connection["sync_status"] if connection else None,
            "audience": audience,
            "members": members,
        }

    @router.post("/demo/contacts", status_code=201)
    def add(contact: ContactIn) -> dict[str, str]:
        values = {**contact.values(), "user_id": site.user_id}
        with db() as conn:
            row = demo_store.add_contact(conn, values)
        assert row is not None
        return {"id": str(row["id"])}

    @router.put("/demo/contacts/{contact_id}")
    def edit(contact_id: uuid.UUID, contact: ContactIn) -> dict[str, str]:
        with db() as conn:
            values = {**contact.values(), "id": contact_id, "user_id": site.user_id}
            if not demo_store.edit_contact(conn, values):
                raise HTTPException(404, "no such contact")
        return {"id": str(contact_id)}

    @router.delete("/demo/contacts/{contact_id}")
    def delete(contact_id: uuid.UUID) -> dict[str, str]:
        with db() as conn:
            if not demo_store.delete_contact(conn, contact_id, site.user_id):
                raise HTTPException(404, "no such contact")
        return {"id": str(contact_id)}

    return router


def _member(m: dict[str, Any]) -> dict[str, Any]:
    fields = m.get("merge_fields") or {}
    return {
        "email": m["email_address"],
        "name": " ".join(p for p in (fields.get("FNAME"), fields.get("LNAME")) if p),
        "phone": fields.get("PHONE") or "",
        "status": m["status"],
        "tags": sorted(t["name"] for t in m.get("tags") or []),
    }
