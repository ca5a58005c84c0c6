"""Charts drawn on the server as SVG (no script, nothing to download): each a line per series
over the buckets, a dot per known value with its figure as a tooltip, and the same numbers as a
table (templates/dashboards/_chart.html). Colours come from CSS classes, so the page's light
and dark themes apply.

Only coordinates and labels are computed here; the template escapes every text.
"""

import math
from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

WIDTH, HEIGHT = 640, 200
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 28
X_LABELS = 7


@dataclass
class Series:
    label: str
    values: list[float | None]
    css: str = "series-a"
    segments: list[str] = field(default_factory=list)  # SVG polyline points, one per run
    dots: list[tuple[str, str, str]] = field(default_factory=list)  # x, y, tooltip


@dataclass
class Chart:
    slug: str
    title: str
    unit: str  # "", "%", "ms", "tokens"…
    labels: list[str]
    series: list[Series]
    y_ticks: list[tuple[str, str]] = field(default_factory=list)  # y, label
    x_ticks: list[tuple[str, str]] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def has_data(self) -> bool:
        return any(v is not None for s in self.series for v in s.values)

    @property
    def rows(self) -> list[tuple[str, list[str]]]:
        """The table view: a row per bucket, a cell per series."""
        return [
            (label, [format_value(s.values[i], self.unit) for s in self.series])
            for i, label in enumerate(self.labels)
        ]


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "%":
        return f"{value * 100:.1f} %"
    if unit == "ms":
        return f"{value:,.1f} ms"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}"


def bucket_label(start: datetime, bucket: str) -> str:
    local = timezone.localtime(start)
    return local.strftime("%Y-%m-%d %H:00" if bucket == "hour" else "%Y-%m-%d")


def line_chart(
    slug: str, title: str, unit: str, starts: list[datetime], bucket: str, series: list[Series]
) -> Chart:
    labels = [bucket_label(start, bucket) for start in starts]
    chart = Chart(slug, title, unit, labels, series)
    known = [v for s in series for v in s.values if v is not None]
    top = 1.0 if unit == "%" else _nice_top(max(known, default=0.0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    count = len(starts)

    def x_of(i: int) -> float:
        return LEFT + (plot_w * (i + 0.5) / count if count else 0)

    def y_of(value: float) -> float:
        return TOP + plot_h * (1 - (value / top if top else 0))

    for step in range(5):
        value = top * step / 4
        chart.y_ticks.append((_at(y_of(value)), format_value(value, unit)))
    every = max(1, math.ceil(count / X_LABELS))
    chart.x_ticks = [(_at(x_of(i)), labels[i][5:]) for i in range(0, count, every)]
    for line in series:
        run: list[str] = []
        for i, value in enumerate(line.values):
            if value is None:
                if run:
                    line.segments.append(" ".join(run))
                run = []
                continue
            x, y = _at(x_of(i)), _at(y_of(value))
            run.append(f"{x},{y}")
            line.dots.append((x, y, f"{line.label}, {labels[i]}: {format_value(value, unit)}"))
        if run:
            line.segments.append(" ".join(run))
    return chart


def _at(coordinate: float) -> str:
    """A coordinate as SVG text (never localized by the template)."""
    return f"{coordinate:.1f}"


def _nice_top(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^k at or above the value (at least 1)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power
