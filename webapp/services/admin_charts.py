"""Geometry for the analytics charts, drawn by the templates as inline SVG: no JavaScript, no chart library."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

WIDTH, HEIGHT, GAP = 720, 140, 1


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str  # the tooltip: "2026-11-23: 12 requests"


@dataclass(frozen=True)
class BarChart:
    title: str
    bars: list[Bar]
    peak: str  # the formatted largest value, printed on the y axis
    first: str  # the first and last x labels, printed under the axis
    last: str
    total: str
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def empty(self) -> bool:
        return not any(b.height > 0 for b in self.bars)


def bar_chart(title: str, points: Sequence[tuple[str, int]], unit: str,
              fmt: Callable[[int], str] = lambda v: f"{v:,}") -> BarChart:
    """One bar per point, scaled to the largest value; a zero-height bar still takes its slot."""
    peak = max((v for _, v in points), default=0)
    slot = WIDTH / max(len(points), 1)
    bars = []
    for i, (label, value) in enumerate(points):
        h = 0.0 if peak == 0 else round(HEIGHT * value / peak, 2)
        bars.append(Bar(x=round(i * slot, 2), y=round(HEIGHT - h, 2), width=round(max(slot - GAP, 0.5), 2),
                        height=h, label=f"{label}: {fmt(value)} {unit}"))
    return BarChart(title=title, bars=bars, peak=fmt(peak), first=points[0][0] if points else "",
                    last=points[-1][0] if points else "", total=fmt(sum(v for _, v in points)))


def shares(values: Sequence[int]) -> list[float]:
    """Each value as a fraction of the largest (for the horizontal bars beside a table row)."""
    peak = max(values, default=0)
    return [0.0 if peak == 0 else round(v / peak, 4) for v in values]
