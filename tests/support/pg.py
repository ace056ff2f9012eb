"""Where the tests' PostgreSQL comes from: MCSYNC_TEST_DATABASE_URL, else testcontainers when a
Docker engine answers, else an embedded server from `pgserver`. Always a real server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from mcsync.embedded import start_embedded_postgres


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yields an admin URL on a server where the tests may create databases."""
    url = os.environ.get("MCSYNC_TEST_DATABASE_URL")
    if url:
        yield url
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer  # type: ignore[import-untyped]

        with PostgresContainer("postgres:16-alpine", driver=None) as container:
            yield container.get_connection_url()
        return
    server = start_embedded_postgres()
    try:
        yield server.url
    finally:
        server.stop()
