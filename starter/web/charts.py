"""The usage-per-day bar chart as inline SVG geometry (no chart library needed).

The template (``web/_chart.html``) draws what :func:`day_chart` computes: one stacked bar
per day (included minutes below, extra minutes on top), five y-axis ticks with the unit
above them, and day labels: every ``every``-th on a desktop, every second of those on a
phone (CSS hides the rest, so a 390 px screen shows about five). Words and number formats
are the page's (the template formats the values with the Translator: ``2,5`` and
``01.11.`` in German). A period without a single call is ``empty``: the template says so
instead of drawing an axis over nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

from starter.web.data import DayUsage

WIDTH, HEIGHT = 640, 230
# Room for tick labels like "1.000" at the phone's larger font, and for the unit on top.
LEFT, RIGHT, TOP, BOTTOM = 64, 8, 48, 30
# Day labels on a desktop; a phone shows every second of them.
DESKTOP_LABELS = 10


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    included_y: float
    included_height: float
    extra_y: float
    extra_height: float
    day: date
    label: str
    show_label: bool
    show_label_on_phone: bool
    included_minutes: float
    extra_minutes: float


@dataclass(frozen=True)
class Tick:
    y: float
    value: float
    decimals: int

    @property
    def label(self) -> str:
        return f"{self.value:.{self.decimals}f}"


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    top: int
    bottom_y: float
    bars: list[Bar]
    ticks: list[Tick]
    empty: bool


def _nice_max(value: float) -> float:
    """The axis top: four equal steps that read well (1, 2, 4, 6, 8, 10 × 10^n → steps of
    0,25 / 0,5 / 1 / 1,5 / 2 / 2,5 × 10^n)."""
    if value <= 1:
        return 1.0  # at least one minute: no axis in hundredths for a few seconds
    exponent = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 4, 6, 8, 10):
        if value <= step * exponent + 1e-9:
            return step * exponent
    return 10 * exponent


def _decimals(step: float) -> int:
    """Enough decimals to tell the ticks apart (0,25 / 0,5 / 1), no more."""
    for decimals in range(3):
        if abs(step * 10**decimals - round(step * 10**decimals)) < 1e-9:
            return decimals
    return 2


def day_chart(days: list[DayUsage], day_format: str = "%d.%m.") -> Chart:
    """``day_format`` only names the bars in the table fallback's raw data; the page shows
    days and ticks through the Translator (``t.day``, ``t.number``)."""
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM
    bottom = TOP + plot_height
    peak = max(((d.included_seconds + d.extra_seconds) / 60 for d in days), default=0.0)
    top_value = _nice_max(peak)
    count = max(1, len(days))
    slot = plot_width / count
    width = min(36.0, max(1.0, slot * 0.7))
    every = max(1, math.ceil(count / DESKTOP_LABELS))
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
                day=day.day,
                label=day.day.strftime(day_format),
                show_label=index % every == 0,
                show_label_on_phone=index % (2 * every) == 0,
                included_minutes=round(included, 1),
                extra_minutes=round(extra, 1),
            )
        )
    decimals = _decimals(top_value / 4)
    ticks = [
        Tick(y=round(bottom - plot_height * i / 4, 2), value=top_value * i / 4, decimals=decimals)
        for i in range(5)
    ]
    return Chart(WIDTH, HEIGHT, LEFT, TOP, bottom, bars, ticks, empty=peak == 0)
