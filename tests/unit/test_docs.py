"""The documentation is self-contained: its links resolve, and nothing cites files outside the
repository."""

from __future__ import annotations

import re
from pathlib import Path

SKIP_DIRS = {".git", ".venv", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".hypothesis",
             "__pycache__", "build", "dist", "test-artifacts"}
TEXT_SUFFIXES = {".md", ".py", ".sql", ".js", ".toml", ".txt", ""}
# Documents that live outside this repository; spelled in pieces so this file does not cite them.
OUTSIDE = ["shared" + "/design.md", "mailchimp-api" + ".md", "/work" + "/shared", "../" + "shared",
           "DEVELOPERS" + ".md"]


def _repo_files(root: Path) -> list[Path]:
    return [
        p for p in root.rglob("*")
        if p.is_file() and not (SKIP_DIRS & set(p.relative_to(root).parts))
        and not any(part.endswith(".egg-info") for part in p.parts) and p.suffix in TEXT_SUFFIXES
    ]


def test_nothing_cites_documents_outside_the_repository(repo_root: Path) -> None:
    offenders = [
        f"{p.relative_to(repo_root)}: {needle}"
        for p in _repo_files(repo_root)
        for needle in OUTSIDE
        if needle in p.read_text(errors="replace")
    ]
    assert offenders == []


def test_readme_and_docs_links_resolve(repo_root: Path) -> None:
    pages = [repo_root / "README.md", *sorted((repo_root / "docs").glob("*.md"))]
    assert {p.name for p in pages} >= {
        "README.md", "install.md", "operators.md", "web.md", "emulator.md", "design.md",
        "performance.md",
    }
    broken = []
    for page in pages:
        text = page.read_text()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # an absolute URL
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                broken.append(f"{page.name}: {target}")
            elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert broken == []


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower-cased, punctuation dropped, spaces to hyphens."""
    return {
        re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", page.read_text(), flags=re.M)
    }


def test_the_readme_stays_a_front_door(repo_root: Path) -> None:
    """README is the front door (guides live in docs/): under 15,000 bytes."""
    assert len((repo_root / "README.md").read_bytes()) < 15_000
