"""docs/design.md's map of the code ("The code, module by module") matches the tree: every
module under src/mcsync is listed, and everything listed exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "mcsync"
# Listed as a whole: a folder row covers every module in it.
_CELL = re.compile(r"`([^`]+)`")


def _listed() -> set[str]:
    text = (ROOT / "docs" / "design.md").read_text()
    section = text.split("## The code, module by module", 1)[1].split("\n## ", 1)[0]
    listed: set[str] = set()
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        first_cell = line.split("|")[1]
        folder = ""
        for name in _CELL.findall(first_cell):
            if "/" in name:
                folder = name.rpartition("/")[0] + "/" if not name.endswith("/") else name
            listed.add(name if "/" in name or not folder else folder + name)
    return listed


def _covered(module: str, listed: set[str]) -> bool:
    return module in listed or any(f.endswith("/") and module.startswith(f) for f in listed)


def test_every_module_is_on_the_map() -> None:
    listed = _listed()
    modules = {
        p.relative_to(PACKAGE).as_posix()
        for p in PACKAGE.rglob("*.py")
        if p.name != "__init__.py" or p.parent.name == "queries"
    } - {"__init__.py"}
    missing = sorted(m for m in modules if not _covered(m, listed))
    assert not missing, f"add these to docs/design.md's map of the code: {missing}"


def test_the_map_lists_nothing_that_is_gone() -> None:
    gone = sorted(name for name in _listed() if not (PACKAGE / name).exists())
    assert not gone, f"docs/design.md's map lists modules that are not in src/mcsync: {gone}"
