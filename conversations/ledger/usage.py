"""Usage and cost: prices, the ledger, budgets and rate limits.

Every completion, from the chat UI or /v1, gets one ``UsageRecord``. It is
*reserved* with an estimate before the provider is called, for a user with limits
inside a transaction that locks the rows of the limits that apply (the policies of
their groups with a budget, their own limits row, the API key's row, always in that
order), so concurrent requests see each other's reservations and cannot overspend a
budget; it is *settled* to the real counts and cost when the completion ends, however
it ends. A /v1 call without any limit writes its record once, settled. Totals are
sums of the ledger.

Limits that apply to a call, each refusing on its own: the user's (their own, else the
most generous default of their groups, else the site's), the monthly budget of each
of their groups (spent by the group's members together), and the API key's own
budget and requests per minute.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeGuard

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Count, F, Min, Sum
from django.utils import timezone

from conversations.core.errors import QuotaExceeded, RateLimited
from conversations.core.rowcache import rowcache_get
from conversations.ledger.limits import NO_LIMITS, Limits, RateWindow, group_spent, limits_for, month_start
from conversations.ledger.prices import Price, cost_of, price_at, price_in
from conversations.models import (
    ApiKey,
    GroupPolicy,
    Message,
    ModelPrice,
    StoredCompletion,
    UsageRecord,
    UserLimits,
)

# The largest counts and cost a ledger row holds (PostgreSQL's integer; cost's 14 digits, 8 after the point).
TOKENS_MAX = 2**31 - 1


COST_MAX = Decimal("999999.99999999")


WINDOW = timedelta(minutes=1)


def usage_reserve(
    *,
    user: User,
    model: str,
    provider: str,
    prompt_tokens: int,
    max_output_tokens: int | None,
    api_key: ApiKey | None = None,
    message: Message | None = None,
    defer: bool = False,
) -> UsageRecord:
    """Check the limits that apply (the user's, their groups' budgets, ``api_key``'s) and reserve this
    completion's estimated usage, or raise QuotaExceeded (RateLimited for a per-minute limit).

    Reservations under a limit are serialised (a transaction holding the rows of the
    limits that apply) so each sees the ones before it. Without limits there is nothing
    to check: the reservation is one INSERT, or with ``defer`` none, the record coming
    back unsaved for ``usage_settle`` to write once, when the call ends.
    """
    limits = limits_for(user=user)
    reservation = functools.partial(
        _reservation,
        user=user,
        model=model,
        provider=provider,
        prompt_tokens=prompt_tokens,
        max_output_tokens=max_output_tokens,
        api_key=api_key,
        message=message,
    )
    limited_key = api_key if api_key is not None and api_key.has_limits else None  # a key with limits of its own
    if limits == NO_LIMITS and limited_key is None:
        record = reservation(now=timezone.now())
        if not defer:
            record.save(force_insert=True)
        return record
    with transaction.atomic():
        if limits.group_budgets:
            list(
                GroupPolicy.objects.select_for_update()
                .filter(group_id__in=[g.group_id for g in limits.group_budgets])
                .order_by("group_id")
                .values_list("pk")
            )
        if limits.own:
            UserLimits.objects.select_for_update().get_or_create(user=user)
        if limited_key is not None:
            list(ApiKey.objects.select_for_update().filter(pk=limited_key.pk).values_list("pk"))
        now = timezone.now()
        record = reservation(now=now)
        ledger = UsageRecord.objects.filter(user=user)
        if limits.requests_per_minute is not None or limits.tokens_per_minute is not None:
            record.rate_windows = _user_rate_check(limits, ledger, record, now)
        if limited_key is not None and limited_key.requests_per_minute is not None:
            _key_rate_check(limited_key, now)
        first = month_start(now)
        if limited_key is not None and limited_key.monthly_budget is not None:
            _budget_check(
                _spent(UsageRecord.objects.filter(api_key=limited_key), first),
                record.cost,
                limited_key.monthly_budget,
                "This API key's monthly budget is reached",
                ". Create a key with a larger budget, or wait for next month.",
            )
        if limits.monthly_budget is not None:
            _budget_check(
                _spent(ledger, first),
                record.cost,
                limits.monthly_budget,
                "Monthly budget reached",
                ". An admin can raise it.",
            )
        for group in limits.group_budgets:
            _budget_check(
                group_spent(group_id=group.group_id, since=first),
                record.cost,
                group.budget,
                f"The monthly budget of your group “{group.name}” is reached",
                " by its members. An admin can raise it.",
            )
        record.save(force_insert=True)
        return record


def _budget_check(spent: Decimal, cost: Decimal, budget: Decimal, head: str, tail: str) -> None:
    """``QuotaExceeded`` when ``cost`` does not fit in what ``spent`` left of ``budget``, worded ``head``: figures ``tail``."""
    if spent + cost > budget:
        raise QuotaExceeded(
            f"{head}: ${spent:.2f} of ${budget:.2f} used this month{tail}",
            kind="budget",
            limit=budget,
            remaining=max(budget - spent, Decimal(0)),
        )


def _spent(ledger: Any, since: datetime) -> Decimal:
    return ledger.filter(created_at__gte=since).aggregate(total=Sum("cost"))["total"] or Decimal(0)


def _user_rate_check(limits: Limits, ledger: Any, record: UsageRecord, now: datetime) -> tuple[RateWindow, ...]:
    """``RateLimited`` when this call would pass the user's per-minute limits; else where they stand."""
    window = ledger.filter(created_at__gt=now - WINDOW).aggregate(
        requests=Count("id"), tokens=Sum(F("prompt_tokens") + F("completion_tokens")), oldest=Min("created_at")
    )
    retry_after = _seconds_until(window["oldest"] + WINDOW, now) if window["oldest"] else None
    requests, tokens = window["requests"] or 0, window["tokens"] or 0
    if limits.requests_per_minute is not None and requests >= limits.requests_per_minute:
        raise RateLimited(
            f"Rate limit reached: {limits.requests_per_minute} requests per minute. Try again in {retry_after} s.",
            kind="requests",
            retry_after=retry_after,
            limit=limits.requests_per_minute,
            remaining=0,
        )
    if (
        limits.tokens_per_minute is not None
        and tokens + record.prompt_tokens + record.completion_tokens > limits.tokens_per_minute
    ):
        raise RateLimited(
            f"Rate limit reached: {limits.tokens_per_minute:,} tokens per minute. Try again in {retry_after} s.",
            kind="tokens",
            retry_after=retry_after,
            limit=limits.tokens_per_minute,
            remaining=max(limits.tokens_per_minute - tokens, 0),
        )
    reserved = tokens + record.prompt_tokens + record.completion_tokens
    reset = retry_after or int(WINDOW.total_seconds())
    return _windows(limits, requests + 1, reserved, reset=reset)


def _key_rate_check(api_key: ApiKey, now: datetime) -> None:
    """``RateLimited`` when the key has made its requests per minute."""
    window = UsageRecord.objects.filter(api_key=api_key, created_at__gt=now - WINDOW).aggregate(
        requests=Count("id"), oldest=Min("created_at")
    )
    if window["requests"] >= api_key.requests_per_minute:
        retry_after = _seconds_until(window["oldest"] + WINDOW, now)
        raise RateLimited(
            f"Rate limit reached for this API key: {api_key.requests_per_minute} requests per minute. "
            f"Try again in {retry_after} s.",
            kind="requests",
            retry_after=retry_after,
            limit=api_key.requests_per_minute,
            remaining=0,
        )


def usage_reserve_cached(
    *,
    user: User,
    model: str,
    provider: str,
    prompt_tokens: int,
    max_output_tokens: int | None,
    api_key: ApiKey,
) -> UsageRecord | None:
    """``usage_reserve(defer=True)`` without a trip to the database thread, for the common case:
    a user without limits whose limits and model prices are cached. None when it cannot say."""
    prices = rowcache_get(("prices", model))
    if rowcache_get(("limits", user.pk)) != NO_LIMITS or prices is None:
        return None
    return _reservation(
        user=user,
        model=model,
        provider=provider,
        prompt_tokens=prompt_tokens,
        max_output_tokens=max_output_tokens,
        api_key=api_key,
        message=None,
        now=timezone.now(),
        prices=prices,
    )


def _reservation(
    *,
    user: User,
    model: str,
    provider: str,
    prompt_tokens: int,
    max_output_tokens: int | None,
    api_key: ApiKey | None,
    message: Message | None,
    now: datetime,
    prices: list[ModelPrice] | None = None,
) -> UsageRecord:
    """The unsaved record of a completion's worst case (the prompt, and max_tokens or the default
    reserve) at the price in force ``now``, from ``prices`` if given, else from the row cache.
    A worst case beyond what a ledger row holds is reserved as that row's largest."""
    price = price_in(prices, now) if prices is not None else price_at(model=model, at=now)
    prompt_tokens = min(prompt_tokens, TOKENS_MAX)
    output = min(max_output_tokens or settings.USAGE_RESERVE_OUTPUT_TOKENS, TOKENS_MAX)
    cost = cost_of(price=price, prompt_tokens=prompt_tokens, cached_tokens=0, completion_tokens=output)
    return UsageRecord(
        user=user,
        api_key=api_key,
        message=message,
        model=model,
        provider=provider,
        prompt_tokens=prompt_tokens,
        completion_tokens=output,
        estimated=True,
        priced=price.priced,
        input_per_million=price.input_per_million,
        cached_input_per_million=price.cached_input_per_million,
        output_per_million=price.output_per_million,
        created_at=now,
        cost=min(cost, COST_MAX),
    )


def usage_reported(usage: dict[str, Any] | None) -> TypeGuard[dict[str, Any]]:
    """Whether a provider's usage object carries the counts (else chatweb counts them itself)."""
    return usage is not None and usage.get("completion_tokens") is not None  # an empty one has none


def usage_settle(
    *,
    record: UsageRecord,
    usage: dict[str, Any] | None,
    prompt_tokens_estimate: int,
    completion_tokens_estimate: int,
    stored_completion: StoredCompletion | None = None,
) -> UsageRecord:
    """Replace the reservation with what was really used, priced at the reservation's snapshot.

    ``usage`` is the provider's usage object; without one (or without completion
    tokens in it) the estimates count, and the record says so. A deferred reservation
    is written here, whole.
    """
    if usage_reported(usage):
        record.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        record.completion_tokens = int(usage["completion_tokens"])
        record.cached_tokens = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        record.reasoning_tokens = int((usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0)
        record.estimated = False
    else:
        record.prompt_tokens, record.completion_tokens = prompt_tokens_estimate, completion_tokens_estimate
        record.cached_tokens = record.reasoning_tokens = 0
        record.estimated = True
    price = Price(record.input_per_million, record.cached_input_per_million, record.output_per_million, record.priced)
    record.cost = cost_of(
        price=price,
        prompt_tokens=record.prompt_tokens,
        cached_tokens=record.cached_tokens,
        completion_tokens=record.completion_tokens,
    )
    record.state = UsageRecord.State.SETTLED
    fields = [
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "reasoning_tokens",
        "estimated",
        "cost",
        "state",
        "provider",
        "upstream_model",
    ]
    if stored_completion is not None:
        record.stored_completion = stored_completion
        fields.append("stored_completion")
    if record._state.adding:
        record.save(force_insert=True)
    else:
        record.save(update_fields=fields)
    return record


def _windows(limits: Limits, requests: int, tokens: int, *, reset: int) -> tuple[RateWindow, ...]:
    """The user's standing against each per-minute limit they have, this reservation counted."""
    used = {"requests": (limits.requests_per_minute, requests), "tokens": (limits.tokens_per_minute, tokens)}
    return tuple(
        RateWindow(kind, limit, max(limit - count, 0), reset)
        for kind, (limit, count) in used.items()
        if limit is not None
    )


def _seconds_until(when: datetime, now: datetime) -> int:
    return max(1, int((when - now).total_seconds()) + 1)
