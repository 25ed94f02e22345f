"""The usage-per-day bar chart as inline SVG geometry (no chart library needed).

The template draws what :func:`day_chart` computes: one stacked bar per day (included
minutes below, extra minutes on top), a few y-axis ticks and sparse day labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from starter.web.data import DayUsage

WIDTH, HEIGHT = 640, 180
LEFT, RIGHT, TOP, BOTTOM = 40, 8, 10, 22


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    included_y: float
    included_height: float
    extra_y: float
    extra_height: float
    label: str
    show_label: bool
    included_minutes: float
    extra_minutes: float


@dataclass(frozen=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    bottom_y: float
    bars: list[Bar]
    ticks: list[Tick]


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exponent = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exponent:
            return step * exponent
    return 10 * exponent


def day_chart(days: list[DayUsage], day_format: str = "%d.%m.") -> Chart:
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM
    bottom = TOP + plot_height
    peak = max(((d.included_seconds + d.extra_seconds) / 60 for d in days), default=0.0)
    top_value = _nice_max(peak)
    count = max(1, len(days))
    slot = plot_width / count
    width = min(36.0, max(1.0, slot * 0.7))
    every = max(1, math.ceil(count / 10))
    bars = []
    for index, day in enumerate(days):
        included = day.included_seconds / 60
        extra = day.extra_seconds / 60
        included_h = plot_height * included / top_value
        extra_h = plot_height * extra / top_value
        bars.append(
            Bar(
                x=round(LEFT + index * slot + (slot - width) / 2, 2),
                width=round(width, 2),
                included_y=round(bottom - included_h, 2),
                included_height=round(included_h, 2),
                extra_y=round(bottom - included_h - extra_h, 2),
                extra_height=round(extra_h, 2),
                label=day.day.strftime(day_format),
                show_label=index % every == 0,
                included_minutes=round(included, 1),
                extra_minutes=round(extra, 1),
            )
        )
    ticks = [
        Tick(y=round(bottom - plot_height * i / 4, 2), label=f"{top_value * i / 4:g}")
        for i in range(5)
    ]
    return Chart(WIDTH, HEIGHT, LEFT, bottom, bars, ticks)
