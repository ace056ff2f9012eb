"""Shared fixtures: a real PostgreSQL (a migrated template cloned per test) and the emulator."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from mcsync.embedded import database_url
from mcsync.migrate import SQL_DIR, apply_migrations
from tests.support.app_schemas import AppSchema
from tests.support.pg import postgres_server
from tests.support.roles import DEFAULT_PREFIX, FRESH_PREFIX, install_roles, template_prefix

CONTACTS_DDL = (SQL_DIR / "example_contacts.sql").read_text()
TEMPLATE_DB = "mcsync_test_template"


def create_process_logins(url: str, prefix: str = FRESH_PREFIX) -> None:
    """sql/grants.sql applied to the database at `url` for `prefix`'s roles, and the test
    logins made members of them (tests/support/roles.py: the one place that names them)."""
    install_roles(url, prefix)


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def pg_template(pg_admin_url: str) -> str:
    """A database with the app's contacts table and every migration applied, made once."""
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}"')
        conn.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
    url = database_url(pg_admin_url, TEMPLATE_DB)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(CONTACTS_DDL.encode())
    apply_migrations(url)
    create_process_logins(url, DEFAULT_PREFIX)
    return TEMPLATE_DB


def _new_database(admin_url: str, template: str | None) -> str:
    name = f"mcsync_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        clause = f' TEMPLATE "{template}"' if template else ""
        conn.execute(f'CREATE DATABASE "{name}"{clause}')
    return name


def _drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class AppTemplates:
    """One migrated template database per app schema (tests/support/app_schemas.py), made on
    first use."""

    def __init__(self, admin_url: str, default_template: str) -> None:
        self.admin_url = admin_url
        self.made: dict[str, str] = {"contacts": default_template}

    def template(self, app: AppSchema) -> str:
        if app.name not in self.made:
            name = f"mcsync_test_template_{app.name}"
            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
                conn.execute(f'CREATE DATABASE "{name}"')
            url = database_url(self.admin_url, name)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(app.ddl.encode())
            apply_migrations(url, mapping=app.mapping)
            create_process_logins(url, template_prefix(app.name))
            self.made[app.name] = name
        return self.made[app.name]


@pytest.fixture(scope="session")
def app_templates(pg_admin_url: str, pg_template: str) -> AppTemplates:
    return AppTemplates(pg_admin_url, pg_template)


@contextmanager
def app_database(templates: AppTemplates, app: AppSchema) -> Iterator[str]:
    """A fresh database of `app`'s schema with mcsync installed by its mapping."""
    name = _new_database(templates.admin_url, templates.template(app))
    try:
        yield database_url(templates.admin_url, name)
    finally:
        _drop_database(templates.admin_url, name)


@pytest.fixture
def db_url(pg_admin_url: str, pg_template: str) -> Iterator[str]:
    """A fresh, migrated database with an empty contacts table, dropped after the test."""
    name = _new_database(pg_admin_url, pg_template)
    yield database_url(pg_admin_url, name)
    _drop_database(pg_admin_url, name)


@pytest.fixture
def empty_db_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh database with nothing in it (for migration tests)."""
    name = _new_database(pg_admin_url, None)
    yield database_url(pg_admin_url, name)
    _drop_database(pg_admin_url, name)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture
def emulator() -> Iterator[object]:
    """A Mailchimp emulator running as a real HTTP server on loopback, fresh per test."""
    from mcsync.emulator.testing import running_emulator

    with running_emulator() as emu:
        yield emu


@pytest.fixture
def sync(request: pytest.FixtureRequest, emulator: object) -> Iterator[object]:
    """The end-to-end harness: real Postgres + triggers, the emulator, the real worker. On the
    example `contacts` table, or on another app schema of tests/support/app_schemas.py when a test
    is parametrised with one: `@pytest.mark.parametrize("sync", ALL_SCHEMAS, indirect=True)`."""
    from tests.support.app_schemas import CONTACTS
    from tests.support.harness import SyncHarness

    app = getattr(request, "param", CONTACTS)
    if app is CONTACTS:
        yield SyncHarness(request.getfixturevalue("db_url"), emulator)
        return
    with app_database(request.getfixturevalue("app_templates"), app) as url:
        yield SyncHarness(url, emulator, app=app)
