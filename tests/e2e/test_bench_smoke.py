"""`make bench QUICK=1` as a smoke test: every scenario runs at a small size and is reported.

Thresholds are not asserted here (timings on a shared CI machine mean little); only that the
benchmarks run end to end and the report holds every scenario."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCENARIOS = {"latency", "bulk", "triggers", "backlog", "scale", "neighbour", "admin_overview"}


@pytest.mark.timeout(600)
def test_quick_benchmarks_write_a_report_with_every_scenario(
    tmp_path: Path, repo_root: Path
) -> None:
    results = tmp_path / "results"
    env = {**os.environ, "MCSYNC_BENCH_RESULTS_DIR": str(results)}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick"],
        cwd=repo_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]

    json_files = list(results.glob("*-quick.json"))
    md_files = list(results.glob("*-quick.md"))
    assert len(json_files) == 1 and len(md_files) == 1, list(results.iterdir())
    report = json.loads(json_files[0].read_text())
    assert report["mode"] == "quick"
    assert {"cpu", "cores", "memory_gb", "python", "postgres"} <= set(report["machine"])
    by_name = {s["name"]: s for s in report["scenarios"]}
    assert set(by_name) == SCENARIOS
    markdown = md_files[0].read_text()
    for scenario in by_name.values():
        assert scenario["error"] is None, scenario
        assert scenario["metrics"], scenario["name"]
        assert all(m["value"] is not None for m in scenario["metrics"]), scenario
        assert any(m["baseline"] is not None for m in scenario["metrics"]), scenario["name"]
        assert scenario["title"] in markdown
