"""Reports on the usage ledger: totals, by model, by user, per day, the per-day chart and the CSV export.

Every figure is an aggregate query over ``UsageRecord`` (Sum/Count, per day with
``TruncDate`` in UTC); nothing is counted separately and no rows are summed in
Python. Money stays ``Decimal``: the chart's pixel geometry is Decimal too, and the
CSV writes each cost as its exact Decimal string.
"""

from __future__ import annotations

import csv
import datetime
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import User
from django.db.models import Count, F, QuerySet, Sum, Value
from django.db.models.functions import Coalesce, TruncDate

from conversations.ledger.usage import COST_PLACES, Limits, limits_for, month_start
from conversations.models import ChatModel, Conversation, UsageRecord

UTC = datetime.timezone.utc
ZERO = Decimal(0)
CHART_DAYS = 30

# Aggregates of one group of ledger rows. Coalesce keeps empty groups at 0 rather than None.
_ZERO_COST = Value(ZERO, output_field=UsageRecord._meta.get_field("cost"))
AGGREGATES: dict[str, Any] = {
    "cost": Coalesce(Sum("cost"), _ZERO_COST),
    "requests": Count("id"),
    "prompt_tokens": Coalesce(Sum("prompt_tokens"), 0),
    "cached_tokens": Coalesce(Sum("cached_tokens"), 0),
    "completion_tokens": Coalesce(Sum("completion_tokens"), 0),
    "reasoning_tokens": Coalesce(Sum("reasoning_tokens"), 0),
}


@dataclass(frozen=True)
class Totals:
    cost: Decimal = ZERO
    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def cost_exact(self) -> str:
        """The cost to the ledger's 8 places, as plain digits (never ``0E-8``)."""
        return decimal_str(self.cost)

    @classmethod
    def of(cls, row: dict[str, Any]) -> Totals:
        return cls(
            cost=_decimal(row["cost"]),
            requests=int(row["requests"] or 0),
            prompt_tokens=int(row["prompt_tokens"] or 0),
            cached_tokens=int(row["cached_tokens"] or 0),
            completion_tokens=int(row["completion_tokens"] or 0),
            reasoning_tokens=int(row["reasoning_tokens"] or 0),
        )


def decimal_str(value: Decimal) -> str:
    return f"{_decimal(value).quantize(COST_PLACES):f}"


def _decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(value or 0)


def totals(queryset: QuerySet[UsageRecord]) -> Totals:
    """One aggregate query over ``queryset``."""
    return Totals.of(queryset.aggregate(**AGGREGATES))


def grouped(queryset: QuerySet[UsageRecord], *keys: str, order: Iterable[str] = ("-cost",)) -> list[dict[str, Any]]:
    """One GROUP BY query: each row has the ``keys`` and a ``totals`` (Totals)."""
    rows = queryset.order_by().values(*keys).annotate(**AGGREGATES).order_by(*order, *keys)
    return [{**{key: row[key] for key in keys}, "totals": Totals.of(row)} for row in rows]


def by_day(queryset: QuerySet[UsageRecord]) -> list[dict[str, Any]]:
    """Totals per UTC day, oldest first."""
    day = TruncDate("created_at", tzinfo=UTC)
    return grouped(queryset.annotate(day=day), "day", order=())


# --- The chat page -------------------------------------------------------------------------------


def conversation_totals(*, conversation: Conversation) -> Totals:
    """What a conversation's replies cost: its messages' ledger rows, owned by its user."""
    return totals(UsageRecord.objects.filter(user_id=conversation.user_id, message__conversation=conversation))


# --- A user's Usage page -------------------------------------------------------------------------


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


@dataclass
class UsageSummary:
    now: datetime.datetime
    today: Totals
    month: Totals
    limits: Limits
    budget_left: Decimal | None
    by_model: list[dict[str, Any]]
    chart: Chart


def usage_summary(*, queryset: QuerySet[UsageRecord], user: User, now: datetime.datetime) -> UsageSummary:
    """Today, this month (UTC), the user's budget, the month by model and the last 30 days per day.

    ``queryset`` is the user's ledger (``selectors.usage_list``).
    """
    now = now.astimezone(UTC)
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    first = month_start(now)
    month = totals(queryset.filter(created_at__gte=first))
    limits = limits_for(user=user)
    budget_left = None
    if limits.monthly_budget is not None:
        budget_left = max(limits.monthly_budget - month.cost, ZERO)
    chart_start = day_start - datetime.timedelta(days=CHART_DAYS - 1)
    return UsageSummary(
        now=now,
        today=totals(queryset.filter(created_at__gte=day_start)),
        month=month,
        limits=limits,
        budget_left=budget_left,
        by_model=_named(grouped(queryset.filter(created_at__gte=first), "model")),
        chart=chart_build(by_day(queryset.filter(created_at__gte=chart_start)), today=day_start.date()),
    )


def _named(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row with its model's display ``name`` as the chat shows it; a model since removed keeps its id."""
    names = dict(
        ChatModel.objects.filter(name__in=[row["model"] for row in rows])
        .exclude(display_name="")
        .values_list("name", "display_name")
    )
    return [{**row, "name": names.get(row["model"], row["model"])} for row in rows]


# --- CSV -----------------------------------------------------------------------------------------

CSV_HEADER = [
    "date", "time_utc", "model", "provider", "source", "prompt_tokens", "cached_tokens",
    "completion_tokens", "reasoning_tokens", "cost_usd", "estimated", "priced", "state",
]  # fmt: skip
CSV_FIELDS = [
    "created_at", "model", "provider", "api_key_id", "prompt_tokens", "cached_tokens",
    "completion_tokens", "reasoning_tokens", "cost", "estimated", "priced", "state",
]  # fmt: skip


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_row(row: dict[str, Any]) -> list[Any]:
    when = row["created_at"].astimezone(UTC)
    return [
        when.date().isoformat(),
        when.strftime("%H:%M:%S"),
        row["model"],
        row["provider"],
        # /v1 calls carry their key; chat replies carry a message, or nothing once their conversation is deleted.
        "api" if row["api_key_id"] is not None else "chat",
        row["prompt_tokens"],
        row["cached_tokens"],
        row["completion_tokens"],
        row["reasoning_tokens"],
        decimal_str(row["cost"]),
        "true" if row["estimated"] else "false",
        "true" if row["priced"] else "false",
        row["state"],
    ]


def _csv_queryset(queryset: QuerySet[UsageRecord]) -> QuerySet[UsageRecord, dict[str, Any]]:
    rows: QuerySet[UsageRecord, dict[str, Any]] = queryset.order_by("created_at", "id").values(*CSV_FIELDS)
    return rows  # values() of a list of names: django-stubs cannot say the rows' type


def _safe(value: Any) -> Any:
    """Keep spreadsheet apps from running a model name as a formula."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def csv_lines(queryset: QuerySet[UsageRecord]) -> Iterator[str]:
    """The header, then one line per ledger row, oldest first."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_HEADER)
    for row in _csv_queryset(queryset).iterator(chunk_size=2000):
        yield writer.writerow([_safe(v) for v in _csv_row(row)])


async def acsv_lines(queryset: QuerySet[UsageRecord]) -> AsyncIterator[str]:
    """``csv_lines`` for ASGI: reads the rows with the async ORM so the response streams."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_HEADER)
    async for row in _csv_queryset(queryset).aiterator(chunk_size=2000):
        yield writer.writerow([_safe(v) for v in _csv_row(row)])


# --- The admin's report --------------------------------------------------------------------------


@dataclass
class AdminReport:
    since: datetime.datetime
    days: int
    total: Totals
    by_user: list[dict[str, Any]]
    by_group: list[dict[str, Any]]
    by_model: list[dict[str, Any]]
    by_day: list[dict[str, Any]]


def _by_group(ledger: QuerySet[UsageRecord]) -> list[dict[str, Any]]:
    """Totals of each group's current members, with the group's monthly budget; a user in two groups
    counts in both, so these rows may add up to more than the total."""
    in_groups = ledger.annotate(
        group_id=F("user__groups"),
        group_name=F("user__groups__name"),
        budget=F("user__groups__policy__monthly_budget"),
    ).filter(group_id__isnull=False)
    return grouped(in_groups, "group_id", "group_name", "budget")


def admin_report(*, now: datetime.datetime, days: int = CHART_DAYS) -> AdminReport:
    """Every user's usage over the last ``days`` UTC days: by user, by group, by model, by day and in all."""
    now = now.astimezone(UTC)
    since = now.replace(hour=0, minute=0, second=0, microsecond=0) - datetime.timedelta(days=days - 1)
    ledger = UsageRecord.objects.filter(created_at__gte=since)
    rows_by_day = by_day(ledger)
    rows_by_day.reverse()  # newest first
    return AdminReport(
        since=since,
        days=days,
        total=totals(ledger),
        by_user=grouped(ledger.annotate(username=F("user__username")), "user_id", "username"),
        by_group=_by_group(ledger),
        by_model=grouped(ledger, "model"),
        by_day=rows_by_day,
    )
