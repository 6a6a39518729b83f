"""The limits that apply to a user: their own, else their groups' most generous, else the site's; groups' budgets."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import Sum

from conversations.core.rowcache import rowcache_load
from conversations.models import (
    GroupPolicy,
    UsageRecord,
    UserLimits,
)


@dataclass(frozen=True)
class RateWindow:
    """Where a user stands against one per-minute limit (``kind``: ``requests`` or ``tokens``) after a reservation."""

    kind: str
    limit: int | Decimal | None
    remaining: int | Decimal | None
    reset_seconds: int | None


@dataclass(frozen=True)
class GroupBudget:
    """A group's monthly budget, shared by its members."""

    group_id: int
    name: str
    budget: Decimal


@dataclass(frozen=True)
class Limits:
    monthly_budget: Decimal | None
    requests_per_minute: int | None
    tokens_per_minute: int | None
    group_budgets: tuple[GroupBudget, ...] = ()  # by group id: the order their rows are locked in

    @property
    def own(self) -> bool:
        """Whether the user has a limit of their own (else only group budgets apply, or nothing)."""
        return (self.monthly_budget, self.requests_per_minute, self.tokens_per_minute) != (None, None, None)


NO_LIMITS = Limits(None, None, None)


def limits_for(*, user: User) -> Limits:
    """The user's limits (their own, else their groups' defaults, else the site's) and their groups' budgets."""
    return rowcache_load(("limits", user.pk), lambda: _limits_load(user))


def _limits_load(user: User) -> Limits:
    own = UserLimits.objects.filter(user=user).first()
    policies = list(GroupPolicy.objects.filter(group__user=user).select_related("group").order_by("group_id"))
    defaults = settings.USAGE_DEFAULTS

    def pick(name: str) -> Any:
        value = getattr(own, name, None)
        if value is not None:
            return value
        from_groups = [v for p in policies if (v := getattr(p, f"member_{name}")) is not None]
        return max(from_groups) if from_groups else defaults[name]

    budgets = tuple(
        GroupBudget(p.group_id, p.group.name, p.monthly_budget) for p in policies if p.monthly_budget is not None
    )
    return Limits(pick("monthly_budget"), pick("requests_per_minute"), pick("tokens_per_minute"), budgets)


def group_spent(*, group_id: int, since: datetime) -> Decimal:
    """What the group's members have spent since ``since``, together."""
    spent = UsageRecord.objects.filter(user__groups=group_id, created_at__gte=since).aggregate(total=Sum("cost"))
    return spent["total"] or Decimal(0)


def month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
