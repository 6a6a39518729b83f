"""The usage page's chart of cost per day, drawn on the server as bars and ticks (no script)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from conversations.ledger.totals import ZERO, Totals

CHART_DAYS = 30


@dataclass(frozen=True)
class Bar:
    day: datetime.date
    totals: Totals
    x: Decimal
    y: Decimal
    width: Decimal
    height: Decimal


@dataclass(frozen=True)
class Tick:
    y: Decimal
    value: Decimal


@dataclass(frozen=True)
class DayLabel:
    x: Decimal
    day: datetime.date


@dataclass
class Chart:
    """A bar chart of cost per UTC day, as geometry for the template's SVG; bars only on days with usage."""

    days: list[datetime.date]
    bars: list[Bar]
    ticks: list[Tick]
    labels: list[DayLabel]
    maximum: Decimal
    total: Decimal
    width: int = 720
    height: int = 240
    left: int = 76  # room for the cost axis labels
    right: int = 8
    top: int = 12
    bottom: int = 40  # room for the date labels
    plot_width: int = field(init=False)
    plot_height: int = field(init=False)

    def __post_init__(self) -> None:
        self.plot_width = self.width - self.left - self.right
        self.plot_height = self.height - self.top - self.bottom

    @property
    def baseline(self) -> int:
        return self.top + self.plot_height

    @property
    def plot_right(self) -> int:
        return self.left + self.plot_width

    @property
    def middle(self) -> int:
        return self.top + self.plot_height // 2

    @property
    def tick_label_x(self) -> int:
        return self.left - 6

    @property
    def date_label_y(self) -> int:
        return self.baseline + 16


PX = Decimal("0.01")


def _nice_ceiling(value: Decimal) -> Decimal:
    """The smallest of 1, 2, 2.5, 5 × 10^n that is at least ``value`` (a tidy top for the axis)."""
    if value <= 0:
        return Decimal("0.01")
    exponent = value.adjusted()
    for _ in range(2):
        scale = Decimal(1).scaleb(exponent)
        for step in (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5), Decimal(10)):
            if step * scale >= value:
                return (step * scale).normalize()
        exponent += 1
    return value  # not reached


def chart_build(rows: list[dict[str, Any]], *, today: datetime.date, days: int = CHART_DAYS) -> Chart:
    """Geometry for ``days`` UTC days ending ``today`` from ``by_day`` rows."""
    span = [today - datetime.timedelta(days=days - 1 - i) for i in range(days)]
    per_day = {row["day"]: row["totals"] for row in rows}
    chart = Chart(days=span, bars=[], ticks=[], labels=[], maximum=ZERO, total=ZERO)
    top_value = max((t.cost for t in per_day.values()), default=ZERO)
    chart.maximum = _nice_ceiling(top_value)
    chart.total = sum((per_day[d].cost for d in span if d in per_day), ZERO)
    slot = Decimal(chart.plot_width) / days
    gap = slot / 5
    plot_height = Decimal(chart.plot_height)
    for i, day in enumerate(span):
        x = chart.left + slot * i
        if i % 5 == (days - 1) % 5:  # label every fifth day, always today
            chart.labels.append(DayLabel(x=(x + slot / 2).quantize(PX), day=day))
        day_totals = per_day.get(day)
        if day_totals is None or day_totals.requests == 0:
            continue
        height = (day_totals.cost / chart.maximum * plot_height).quantize(PX)
        height = max(height, Decimal(1))  # a day with unpriced usage only still shows
        chart.bars.append(
            Bar(
                day=day,
                totals=day_totals,
                x=(x + gap / 2).quantize(PX),
                y=(chart.baseline - height).quantize(PX),
                width=(slot - gap).quantize(PX),
                height=height,
            )
        )
    for step in range(5):
        value = chart.maximum * step / 4
        chart.ticks.append(Tick(y=(chart.baseline - plot_height * step / 4).quantize(PX), value=value.normalize()))
    return chart
