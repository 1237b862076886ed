"""Geometry for the usage charts, drawn by the settings template as inline SVG (no chart library, no script).

Daily stacked bars by provider for three measures: requests, tokens and credits. Input is the `buckets` list of
`usage.summary(..., group_by=["day", "provider"])`; output is plain numbers and labels. No Flask, no database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from webapp.services.credits import MICRO

WIDTH, HEIGHT = 640, 176
LEFT, RIGHT, TOP, BOTTOM = 64, 8, 8, 24
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
# Distinguishable on white and for the common colour-vision deficiencies (Okabe-Ito, then greys).
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000", "#999999")
MEASURES = (("requests", "Requests", "requests"), ("tokens", "Tokens", "tokens"), ("credits", "Credits", "credits"))
UNKNOWN = "(none)"


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    color: str
    title: str


@dataclass(frozen=True)
class Label:
    pos: float
    text: str


@dataclass(frozen=True)
class Chart:
    measure: str
    title: str
    total: str
    bars: list[Bar]
    ticks: list[Label]  # y position and value
    days: list[Label]  # x position and date


@dataclass(frozen=True)
class Series:
    provider: str
    color: str


@dataclass(frozen=True)
class Row:
    day: str
    provider: str
    requests: int
    tokens_in: int
    tokens_out: int
    credits: str
    errors: int


@dataclass(frozen=True)
class UsageCharts:
    start: date
    end: date
    series: list[Series]
    charts: list[Chart]
    rows: list[Row]  # newest day first; only days with requests
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT  # where the plot area starts (tick labels sit to its left)
    right: int = WIDTH - RIGHT

    @property
    def empty(self) -> bool:
        return not self.rows


def credits_label(micro: int | None) -> str:
    """Micro-credits as a plain decimal without trailing zeros: 1500000 -> '1.5'."""
    if micro is None:
        return ""
    return f"{(Decimal(micro) / MICRO).normalize():f}"


def nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 x 10^k (k >= 0) at or above `value`, so axis labels are round numbers."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if m * step >= value:
                return m * step
        step *= 10


def _value_label(measure: str, value: int) -> str:
    if measure == "credits":
        return credits_label(value)
    return f"{value:,}"


def _axis_label(measure: str, value: int) -> str:
    if measure == "credits":
        return credits_label(value)
    for size, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if value >= size and value % (size // 10) == 0:
            return f"{(Decimal(value) / size).normalize():f}" + suffix
    return f"{value:,}"


def _measure(bucket: dict[str, Any], measure: str) -> int:
    if measure == "requests":
        return int(bucket["requests"])
    if measure == "tokens":
        return int(bucket["tokens_in"]) + int(bucket["tokens_out"])
    return int(bucket["credits_micro"])


def _chart(measure: str, title: str, unit: str, days: list[date], providers: list[Series],
           values: dict[tuple[date, str], dict[str, Any]]) -> Chart:
    slot = PLOT_W / len(days)
    bar_w = round(slot * 0.72, 2)
    totals = [sum(_measure(values[(d, s.provider)], measure) for s in providers if (d, s.provider) in values)
              for d in days]
    top = nice_ceiling(max(totals, default=0) or 1)
    bars = []
    for i, day in enumerate(days):
        x = round(LEFT + i * slot + (slot - bar_w) / 2, 2)
        base = 0
        for series in providers:
            bucket = values.get((day, series.provider))
            value = _measure(bucket, measure) if bucket else 0
            if value <= 0:
                continue
            y0 = TOP + PLOT_H * (1 - base / top)
            y1 = TOP + PLOT_H * (1 - (base + value) / top)
            bars.append(Bar(x, round(y1, 2), bar_w, round(max(y0 - y1, 0.5), 2), series.color,
                            f"{day:%b %d} · {series.provider}: {_value_label(measure, value)} {unit}"))
            base += value
    ticks = [Label(TOP + PLOT_H, "0"), Label(TOP, _axis_label(measure, top))]
    if top % 2 == 0:
        ticks.insert(1, Label(TOP + PLOT_H / 2, _axis_label(measure, top // 2)))
    # Label every seventh day counting back from the last, so "today" is always labelled; over longer ranges
    # (a year) every few weeks, so about ten labels never overlap.
    step = 7 * max(1, -(-len(days) // 70))
    labels = [Label(round(LEFT + i * slot + slot / 2, 2), f"{day:%b %d}")
              for i, day in enumerate(days) if (len(days) - 1 - i) % step == 0]
    return Chart(measure, title, _value_label(measure, sum(totals)), bars, ticks, labels)


def usage_charts(buckets: list[dict[str, Any]], start: date, end: date) -> UsageCharts:
    """Stacked bars per day (start..end inclusive), one colour per provider, for requests, tokens and credits."""
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    values: dict[tuple[date, str], dict[str, Any]] = {}
    per_provider: dict[str, int] = {}
    for b in buckets:
        day = date.fromisoformat(str(b["day"]))
        provider = b.get("provider") or UNKNOWN
        values[(day, provider)] = b
        per_provider[provider] = per_provider.get(provider, 0) + int(b["requests"])
    # Busiest provider at the bottom of each stack, and the first colour.
    order = sorted(per_provider, key=lambda p: (-per_provider[p], p))
    series = [Series(p, PALETTE[i % len(PALETTE)]) for i, p in enumerate(order)]
    charts = [_chart(m, t, u, days, series, values) for m, t, u in MEASURES]
    rows = [Row(day.isoformat(), provider, int(b["requests"]), int(b["tokens_in"]), int(b["tokens_out"]),
                credits_label(int(b["credits_micro"])), int(b.get("errors") or 0))
            for (day, provider), b in sorted(values.items(), key=lambda kv: (-kv[0][0].toordinal(), kv[0][1]))]
    return UsageCharts(start, end, series, charts, rows)
