"""The pictures of a run, as small hand-written SVG (no plotting dependency).

`scale_svg`: CPU ms per contact of each process against the import size (log x), with the
0.10 ms target. `latency_svg`: the distribution (CDF) of commit -> applied latencies (log x):
the quiet live-latency run and the neighbour scenario's quiet and during-import phases."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import Any

WIDTH, HEIGHT = 760, 360
LEFT, RIGHT, TOP, BOTTOM = 64, 250, 36, 48
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exp:
            return step * exp
    return 10 * exp


def _fmt(v: float) -> str:
    if v >= 1000:
        return f"{v / 1000:g}k" if v < 1_000_000 else f"{v / 1_000_000:g}M"
    return f"{v:g}"


def _ms(v: float) -> str:
    return f"{v / 1000:g} s" if v >= 1000 else f"{v:g} ms"


class _Plot:
    def __init__(self, title: str, xlabel: str, ylabel: str) -> None:
        self.parts: list[str] = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
            f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
            f'<text x="{LEFT}" y="20" font-size="14" font-weight="bold">{escape(title)}</text>',
            f'<text x="{LEFT + self.w / 2}" y="{HEIGHT - 10}" text-anchor="middle">'
            f"{escape(xlabel)}</text>",
            f'<text transform="translate(16 {TOP + self.h / 2}) rotate(-90)" '
            f'text-anchor="middle">{escape(ylabel)}</text>',
        ]
        self.legend_y = TOP + 8

    @property
    def w(self) -> float:
        return WIDTH - LEFT - RIGHT

    @property
    def h(self) -> float:
        return HEIGHT - TOP - BOTTOM

    def axes(
        self, xticks: Sequence[tuple[float, str]], yticks: Sequence[tuple[float, str]]
    ) -> None:
        """Ticks given in pixel fractions (0..1) of each axis, with their labels."""
        for fx, label in xticks:
            x = LEFT + fx * self.w
            self.parts.append(
                f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + self.h}" stroke="#eee"/>'
                f'<text x="{x:.1f}" y="{TOP + self.h + 16}" text-anchor="middle">'
                f"{escape(label)}</text>"
            )
        for fy, label in yticks:
            y = TOP + (1 - fy) * self.h
            self.parts.append(
                f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + self.w}" y2="{y:.1f}" stroke="#eee"/>'
                f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(label)}</text>'
            )
        self.parts.append(
            f'<rect x="{LEFT}" y="{TOP}" width="{self.w}" height="{self.h}" fill="none" '
            'stroke="#444"/>'
        )

    def line(
        self,
        points: Sequence[tuple[float, float]],
        colour: str,
        label: str,
        *,
        dashed: bool = False,
        markers: bool = False,
    ) -> None:
        """Points in axis fractions (0..1, 0..1)."""
        if not points:
            return
        coords = " ".join(
            f"{LEFT + fx * self.w:.1f},{TOP + (1 - min(max(fy, 0), 1)) * self.h:.1f}"
            for fx, fy in points
        )
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        self.parts.append(
            f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>'
        )
        if markers:
            for fx, fy in points:
                self.parts.append(
                    f'<circle cx="{LEFT + fx * self.w:.1f}" '
                    f'cy="{TOP + (1 - min(max(fy, 0), 1)) * self.h:.1f}" r="3.5" fill="{colour}"/>'
                )
        lx = LEFT + self.w + 12
        self.parts.append(
            f'<line x1="{lx}" y1="{self.legend_y}" x2="{lx + 22}" y2="{self.legend_y}" '
            f'stroke="{colour}" stroke-width="2"{dash}/>'
            f'<text x="{lx + 28}" y="{self.legend_y + 4}">{escape(label)}</text>'
        )
        self.legend_y += 18

    def render(self) -> str:
        return "\n".join([*self.parts, "</svg>"]) + "\n"


def _log_frac(v: float, lo: float, hi: float) -> float:
    return (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))


def scale_svg(series: dict[str, Any], target_ms: float = 0.10) -> str:
    """CPU ms per contact per process against the import size."""
    sizes: list[int] = series["sizes"]
    cpu: dict[str, list[float]] = series["cpu_ms_per_contact"]
    plot = _Plot(
        "CPU per mirrored contact vs import size", "contacts in one import (log)", "CPU ms/contact"
    )
    lo, hi = min(sizes) / 1.5, max(sizes) * 1.5
    top = _nice_max(max([target_ms, *(v for vs in cpu.values() for v in vs)]) * 1.1)
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    xticks = [(_log_frac(10**d, lo, hi), _fmt(10**d)) for d in decades if lo <= 10**d <= hi]
    xticks += [(_log_frac(s, lo, hi), _fmt(s)) for s in sizes if s not in {10**d for d in decades}]
    plot.axes(xticks, [(i / 5, f"{top * i / 5:g}") for i in range(6)])
    for colour, (proc, values) in zip(COLOURS, cpu.items(), strict=False):
        plot.line(
            [(_log_frac(s, lo, hi), v / top) for s, v in zip(sizes, values, strict=True)],
            colour,
            proc,
            markers=True,
        )
    plot.line([(0, target_ms / top), (1, target_ms / top)], "#777", f"target {target_ms:g}",
              dashed=True)
    return plot.render()


def latency_svg(curves: dict[str, Sequence[float]], targets: Sequence[float] = (10, 50)) -> str:
    """Cumulative distribution of latencies (ms, log x), one line per named sample."""
    curves = {k: sorted(v) for k, v in curves.items() if v}
    plot = _Plot(
        "Commit -> applied latency (cumulative)", "latency (log)", "fraction of edits"
    )
    values = [x for vs in curves.values() for x in vs] or [1.0]
    lo = max(0.5, min([*values, *targets]) / 1.5)
    hi = max([*values, *targets]) * 1.5
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    steps = (1,) if len(decades) > 4 else (1, 2, 5)  # keep the tick labels apart
    marks = [m * 10**d for d in decades for m in steps]
    xticks = [(_log_frac(v, lo, hi), _ms(v)) for v in marks if lo <= v <= hi]
    plot.axes(xticks, [(i / 4, f"{i / 4:g}") for i in range(5)])
    for colour, (name, vs) in zip(COLOURS, curves.items(), strict=False):
        n = len(vs)
        pts: list[tuple[float, float]] = []
        for i, v in enumerate(vs):
            fx = _log_frac(max(v, lo), lo, hi)
            pts += [(fx, i / n), (fx, (i + 1) / n)]
        plot.line(pts, colour, f"{name} (n={n})")
    for t in targets:
        if lo <= t <= hi:
            fx = _log_frac(t, lo, hi)
            plot.line([(fx, 0), (fx, 1)], "#999", f"{t:g} ms", dashed=True)
    return plot.render()


def write_charts(report: dict[str, Any]) -> dict[str, str]:
    """SVG text by file suffix ("scale", "latency") for the scenarios this run had."""
    by_name = {s["name"]: s for s in report["scenarios"] if not s.get("error")}
    out: dict[str, str] = {}
    scale = by_name.get("scale", {}).get("series")
    if scale and scale.get("sizes"):
        out["scale"] = scale_svg(scale)
    curves: dict[str, Sequence[float]] = {}
    live = by_name.get("latency", {}).get("series", {})
    if live.get("notify"):
        curves["live edits, quiet"] = live["notify"]
    neighbour = by_name.get("neighbour", {}).get("series", {})
    one = neighbour.get("1w")
    if one:
        curves["30 users, quiet"] = one["quiet"]
        curves["30 users, during import"] = one["during"]
    two = neighbour.get("2w")
    if two:
        curves["2 workers, during import"] = two["during"]
    if curves:
        out["latency"] = latency_svg(curves)
    return out
