"""The style rules hold: ruff and mypy clean (they run in `make test`, so CI keeps them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def test_ruff_is_clean(repo_root: Path) -> None:
    run = subprocess.run(
        [str(BIN / "ruff"), "check", "src", "tests", "benchmarks"],
        cwd=repo_root, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_mypy_is_clean(repo_root: Path) -> None:
    run = subprocess.run(
        [str(BIN / "mypy")], cwd=repo_root, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout + run.stderr
