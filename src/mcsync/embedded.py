"""An embedded PostgreSQL (the `pgserver` package) for the demo, tests and benchmarks.

`pgserver` is not a dependency of a production install: it comes with the `demo` and `test`
extras (`pip install 'mcsync[demo]'`), and is imported only when a server is started."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class EmbeddedPostgresUnavailable(RuntimeError):
    """The `pgserver` package is not installed."""


@dataclass
class EmbeddedPostgres:
    url: str
    data_dir: Path
    _server: Any
    _remove_data_dir: bool = False

    def stop(self) -> None:
        """Stop the server; a data directory made for it (none was given) goes too, so a run
        leaves nothing behind in /tmp (each is 40 MB or more)."""
        self._server.cleanup()
        if self._remove_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def start_embedded_postgres(data_dir: Path | None = None) -> EmbeddedPostgres:
    """Start (or reuse) a private PostgreSQL server; works as root too."""
    import warnings

    # pgserver asks platformdirs for a runtime dir; without XDG_RUNTIME_DIR it warns and
    # falls back to /tmp, which is fine for an embedded server.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import logging

    try:
        import pgserver  # imported lazily: only the embedded paths need it
    except ImportError as exc:
        raise EmbeddedPostgresUnavailable(
            "the embedded PostgreSQL needs the pgserver package, which production installs"
            " leave out; install it with: pip install 'mcsync[demo]' (from a checkout:"
            " pip install -e '.[demo]', or just run `make demo`)"
        ) from exc

    logging.getLogger("pgserver").setLevel(logging.WARNING)  # it narrates every pg_ctl call

    path = data_dir or Path(tempfile.mkdtemp(prefix="mcsync-pg-"))
    server = pgserver.get_server(path, cleanup_mode="stop")
    return EmbeddedPostgres(
        url=server.get_uri(), data_dir=path, _server=server, _remove_data_dir=data_dir is None
    )


def database_url(server_url: str, dbname: str) -> str:
    """The same server, another database (works for socket and TCP URLs alike)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(server_url)
    params["dbname"] = dbname
    return make_conninfo("", **{k: v for k, v in params.items() if v is not None})
