"""Every SQL statement mcsync runs, named for what it does, by concern:

- `mcsync.queries.connections`: connecting, the audience, disconnecting, tokens, status, OAuth
  states (and NOTIFY, the hint every writer sends);
- `mcsync.queries.worker`: claiming, reading what the planner needs, recording, health;
- `mcsync.queries.reconcile`: Sync Now runs, `mcsync sync-now`, `mcsync verify`;
- `mcsync.queries.admin`: the operator's page and the health history;
- `mcsync.queries.install`: the migration runner's bookkeeping, the source mapping's record, the
  mapping check's catalog reads, the upgrade's moves;
- `mcsync.queries.doctor`: `mcsync doctor`'s reads and its LISTEN/NOTIFY round trip;
- `mcsync.queries.demo`: `mcsync demo`, which plays the app (never run by mcsync's processes).

Parameters are psycopg named placeholders; array parameters are passed as Python lists.
mcsync's own objects are always schema-qualified (`mcsync.<table>`, see mcsync.schema). The
modules hold the statements as written, for the default schema; a store runs them as
`Statements` renders them, once, when the store is made: for its schema (MCSYNC_SCHEMA unless
told otherwise) and with every catalog function named `pg_catalog.` (issue 17). Nothing
rewrites a module's globals. The app's contacts are read only through the view
`mcsync.source_contacts`, which `mcsync migrate` generates from the source mapping
(mcsync.source): no statement mcsync's processes run names the app's table or columns (the
demo's, which plays the app, do)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from types import MappingProxyType, ModuleType

from mcsync.queries import admin, connections, demo, doctor, install, reconcile, worker
from mcsync.schema import checked_schema, configured_schema, qualify_catalog_calls, render

# The channel the triggers and NOTIFY send to (a name, not a statement: never rendered).
CHANNEL = "mcsync"

STATEMENT_MODULES: tuple[ModuleType, ...] = (
    connections,
    worker,
    reconcile,
    admin,
    install,
    doctor,
    demo,
)


def written(module: ModuleType) -> dict[str, str]:
    """The statements of one module as written: its upper-case string constants."""
    return {
        name: text
        for name, text in vars(module).items()
        if name.isupper() and isinstance(text, str)
    }


class Statements:
    """Every named statement, rendered once for one schema: `statements.GET_CONNECTION`.

    Made by `statements(schema)` (cached, so every store of a process shares one rendering).
    A name no module defines is an AttributeError, as a module's would be."""

    def __init__(self, schema: str) -> None:
        self.schema = checked_schema(schema)
        texts: dict[str, str] = {}
        for module in STATEMENT_MODULES:
            for name, text in written(module).items():
                if name in texts:
                    raise ValueError(f"{name} is defined twice in mcsync.queries")
                texts[name] = qualify_catalog_calls(render(text, self.schema))
        self._texts = MappingProxyType(texts)

    def __getattr__(self, name: str) -> str:
        try:
            return self.__dict__["_texts"][name]
        except KeyError:
            raise AttributeError(f"no statement {name} in mcsync.queries") from None

    @property
    def named(self) -> Mapping[str, str]:
        """Every statement as run: name -> text."""
        return self._texts


@cache
def _rendered(schema: str) -> Statements:
    return Statements(schema)


def statements(schema: str | None = None) -> Statements:
    """The statements rendered for `schema` (this process's MCSYNC_SCHEMA when None); each
    schema is rendered once per process."""
    return _rendered(checked_schema(schema) if schema is not None else configured_schema())
