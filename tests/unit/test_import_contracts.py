"""Import contracts: the layering docs/design.md states, checked on the source (run by `make
lint` and `make test`).

- the pure core (the planner, the ledger, the outcome rules and the worker's data types)
  imports no psycopg and no httpx, not even through another mcsync module;
- the emulator imports nothing of mcsync outside `mcsync.emulator`: it plays Mailchimp, so
  it must not borrow mcsync's idea of how Mailchimp behaves;
- only the stores import the statements (`mcsync.queries`).

Read from the AST, like import-linter's contracts: every `import` a module may run, at its top
or inside a function (a lazy import still runs), but not one under `if TYPE_CHECKING:`
(annotations only, never run). Importing `a.b.c` runs `a/__init__` and `a/b/__init__` too.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

PURE_CORE = (
    "mcsync.mirror",
    "mcsync.ledger",
    "mcsync.worker.outcomes",
    "mcsync.worker.types",
)
FORBIDDEN_IN_CORE = ("psycopg", "psycopg_pool", "httpx")

# The Postgres side of each part: the only modules that run mcsync's named statements.
STORES = {
    "mcsync.worker.store",  # the worker's
    "mcsync.reconcile_store",  # reconciliation's (Sync Now, sync-now, verify)
    "mcsync.connections",  # the connections': connect, audience, disconnect, status
    "mcsync.admin_store",  # the operator's page (its statements in mcsync.queries.admin)
    "mcsync.install_store",  # the migration runner's bookkeeping, the mapping's record and check
    "mcsync.doctor.probes",  # the doctor's reads and its LISTEN/NOTIFY round trip
    "mcsync.demo_store",  # `mcsync demo`: the app's side as it plays it, and what it shows
}
STATEMENTS = ("mcsync.queries",)  # the package and its modules (importing one runs it)


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / "mcsync").rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node but those under `if TYPE_CHECKING:` (its `else:` runs)."""
    out: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        out.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))
    return out


def _with_parents(name: str) -> set[str]:
    """`a.b.c` and the packages importing it runs: `a`, `a.b`."""
    parts = name.split(".")
    return {".".join(parts[: i + 1]) for i in range(len(parts))}


@cache
def imports_of(module: str) -> frozenset[str]:
    """The absolute names `module` may import when it runs (packages included)."""
    path = modules()[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found |= _with_parents(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join([*base, *([node.module] if node.module else [])])
            else:
                origin = node.module or ""
            found |= _with_parents(origin)
            for alias in node.names:
                # `from a import b` imports the module a.b when there is one.
                if f"{origin}.{alias.name}" in modules():
                    found.add(f"{origin}.{alias.name}")
    return frozenset(found)


def reachable(module: str) -> dict[str, list[str]]:
    """Every name `module` imports, directly or through mcsync modules: name -> one chain."""
    chains: dict[str, list[str]] = {module: [module]}
    todo = [module]
    while todo:
        current = todo.pop()
        for name in sorted(imports_of(current)):
            if name in chains:
                continue
            chains[name] = [*chains[current], name]
            if name in modules():
                todo.append(name)
    return chains


@pytest.mark.parametrize("module", PURE_CORE)
def test_the_pure_core_reaches_no_database_and_no_http(module: str) -> None:
    chains = reachable(module)
    reached = {
        name: " -> ".join(chain)
        for name, chain in chains.items()
        if name.split(".")[0] in FORBIDDEN_IN_CORE
    }
    assert not reached, f"{module} must stay pure: {reached}"


def test_the_emulator_imports_nothing_of_mcsync() -> None:
    emulator = [m for m in modules() if m == "mcsync.emulator" or m.startswith("mcsync.emulator.")]
    assert emulator
    outside = {
        m: sorted(
            name
            for name in imports_of(m)
            if name.startswith("mcsync.") and not name.startswith("mcsync.emulator")
        )
        for m in emulator
    }
    assert not {m: names for m, names in outside.items() if names}


def test_only_the_stores_import_the_statements() -> None:
    importers = {
        m
        for m in modules()
        if set(STATEMENTS) & set(imports_of(m))
        and not m.startswith(("mcsync.queries.",))
        and m not in STATEMENTS
    }
    assert importers, "the check found no importer at all: it reads nothing"
    assert importers <= STORES, f"not stores, yet running statements: {importers - STORES}"


def test_the_checker_sees_lazy_and_relative_imports_and_skips_type_checking() -> None:
    """The reading itself: a lazy import counts, a relative one resolves, an annotation-only
    one does not count."""
    assert "mcsync.source" in imports_of("mcsync.migrate")  # a function's own import
    assert "mcsync.emulator.state" in imports_of("mcsync.emulator.api")  # `from .state`
    assert "mcsync.mailchimp.errors" not in imports_of("mcsync.worker.types")
    assert "mcsync.worker.apply" not in imports_of("mcsync.worker.batch")
    assert "httpx" in reachable("mcsync.worker.apply")
