"""`python -m benchmarks [--quick] [--only NAME]`: run the scenarios, write the report.

Writes <results>/<YYYY-MM-DD>.md and .json (`-quick` suffixed in quick mode), where <results> is
benchmarks/results unless --results-dir or MCSYNC_BENCH_RESULTS_DIR says otherwise. Thresholds
are reported, never asserted: the exit status is 0 unless a scenario failed to run."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks import admin_overview, backlog, bulk, latency, neighbour, scale, triggers
from benchmarks.charts import write_charts
from benchmarks.common import Context, Metric, ScenarioResult, log, machine_info

SCENARIOS: dict[str, ModuleType] = {
    m.NAME: m for m in (latency, bulk, triggers, backlog, scale, neighbour, admin_overview)
}
DEFAULT_RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument(
        "--only", action="append", choices=sorted(SCENARIOS), help="run just this scenario"
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=Path(os.environ.get("MCSYNC_BENCH_RESULTS_DIR") or DEFAULT_RESULTS),
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run the bulk, backlog and scale workers under cProfile (keeps .prof files; "
        "skews timings)",
    )
    parser.add_argument(
        "--scale-sizes",
        help="import sizes of the scale curve, e.g. 10000,100000 (default 10k,100k,1M; "
        "or MCSYNC_BENCH_SCALE_SIZES)",
    )
    parser.add_argument(
        "--scale-cap-s", type=float, help="time cap per scale-curve import (default 3600)"
    )
    parser.add_argument(
        "--label", help="appended to the results' file names (<date>[-quick]-LABEL.md ...)"
    )
    args = parser.parse_args(argv)

    names = args.only or list(SCENARIOS)
    # SIGTERM (e.g. CI cancelling) unwinds like Ctrl-C, so workers and Postgres are stopped.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    started = time.monotonic()
    options = {"scale_sizes": args.scale_sizes, "scale_cap_s": args.scale_cap_s}
    ctx = Context.make(args.quick, profile=args.profile, options=options)
    results: list[ScenarioResult] = []
    try:
        machine = machine_info(ctx.dbs.admin_url)
        for name in names:
            results.append(_run_one(name, SCENARIOS[name].run, ctx))
    finally:
        ctx.dbs.close()
    total = time.monotonic() - started

    args.results_dir.mkdir(parents=True, exist_ok=True)
    stem = dt.date.today().isoformat() + ("-quick" if args.quick else "")
    stem += f"-{args.label}" if args.label else ""
    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "seconds": round(total, 1),
        "machine": machine,
        "scenarios": [r.to_json() for r in results],
    }
    json_path = args.results_dir / f"{stem}.json"
    md_path = args.results_dir / f"{stem}.md"
    charts = {}
    for suffix, svg in write_charts(report).items():
        path = args.results_dir / f"{stem}-{suffix}.svg"
        path.write_text(svg)
        charts[suffix] = path.name
    report["charts"] = charts
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path.write_text(render_markdown(report))
    if args.profile:
        for prof in ctx.workdir.glob("*.prof"):
            shutil.copy(prof, args.results_dir / f"{stem}-{prof.name}")
    print(md_path.read_text())
    log(f"wrote {md_path} and {json_path} in {total:.0f} s (worker logs in {ctx.workdir})")
    return 1 if any(r.error for r in results) else 0


def _run_one(name: str, fn: Callable[[Context], ScenarioResult], ctx: Context) -> ScenarioResult:
    log(f"--- {name}")
    t0 = time.monotonic()
    try:
        result = fn(ctx)
    except Exception as exc:
        traceback.print_exc()
        result = ScenarioResult(name, SCENARIOS[name].TITLE, {}, error=repr(exc)[:500])
    result.seconds = time.monotonic() - t0
    log(f"--- {name}: {result.seconds:.1f} s")
    return result


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    text = f"{value:,.3f}".rstrip("0").rstrip(".") if isinstance(value, float) else f"{value:,}"
    return f"{text} {unit}".strip() if unit not in ("x",) else f"{text}x"


def _target(m: dict[str, Any], quick: bool) -> tuple[str, str]:
    if not m["target"]:
        return "", ""
    op, threshold = m["target"]
    text = f"{op} {_fmt(threshold, m['unit'])}"
    if m["met"] is None:
        return text, ""
    verdict = "met" if m["met"] else "**missed**"
    return text, verdict + (" (quick: not asserted)" if quick else "")


def render_markdown(report: dict[str, Any]) -> str:
    quick = report["mode"] == "quick"
    mc = report["machine"]
    lines = [
        f"# mcsync benchmarks, {report['date']} ({report['mode']} run, {report['seconds']:.0f} s)",
        "",
        f"Machine: {mc['cpu']}, {mc['cores']} cores, {mc['memory_gb']} GB RAM, "
        f"{mc['os']}; Python {mc['python']}; PostgreSQL {mc['postgres']} (embedded, pgserver); "
        f"load average at start {mc['load_average_at_start']}.",
        "",
        "Reproduce: `make bench` (or `make bench QUICK=1` for the small smoke run).",
        "",
    ]
    for suffix, name in report.get("charts", {}).items():
        lines += [f"![{suffix}]({name})", ""]
    for s in report["scenarios"]:
        lines += [f"## {s['title']}", ""]
        if s["error"]:
            lines += [f"FAILED: `{s['error']}`", ""]
            continue
        sizes = ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}"
                          for k, v in s["sizes"].items())
        lines += [f"Sizes: {sizes}; took {s['seconds']:.0f} s.", ""]
        lines += [
            "| metric | mcsync | target | verdict | baseline (same run) | notes |",
            "|---|---|---|---|---|---|",
        ]
        for m in s["metrics"]:
            target, verdict = _target(m, quick)
            base = (
                f"{_fmt(m['baseline'], m.get('baseline_unit') or m['unit'])}: {m['baseline_label']}"
                if m["baseline"] is not None
                else ""
            )
            lines.append(
                f"| {m['name']} | {_fmt(m['value'], m['unit'])} | {target} | {verdict} "
                f"| {base} | {m['note']} |"
            )
        lines.append("")
        lines += [f"- {n}" for n in s["notes"]]
        lines.append("")
    return "\n".join(lines)


__all__ = ["Metric", "main", "render_markdown"]

if __name__ == "__main__":
    sys.exit(main())
