"""Reports on the usage ledger: a user's usage page and the admin's report, from the ledger's totals
(``totals.py``), the per-day chart (``charts.py``); the CSV export is ``csv_export.py``.

Every figure is an aggregate query over ``UsageRecord`` (Sum/Count, per day with
``TruncDate`` in UTC); nothing is counted separately and no rows are summed in
Python. Money stays ``Decimal``: the chart's pixel geometry is Decimal too, and the
CSV writes each cost as its exact Decimal string.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib.auth.models import User
from django.db.models import F, QuerySet

from conversations.ledger.charts import CHART_DAYS, Chart, chart_build
from conversations.ledger.limits import Limits, limits_for, month_start
from conversations.ledger.totals import UTC, ZERO, Totals, by_day, grouped, totals
from conversations.models import ChatModel, UsageRecord


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

    ``queryset`` is the user's ledger (``ledger.selectors.usage_list``).
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
