"""Prices per million tokens as they were at a moment, and what a call costs at them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from conversations.core.rowcache import rowcache_load
from conversations.models import (
    ModelPrice,
)

MILLION = Decimal(1_000_000)


COST_PLACES = Decimal("0.00000001")


@dataclass(frozen=True)
class Price:
    input_per_million: Decimal
    cached_input_per_million: Decimal
    output_per_million: Decimal
    priced: bool


UNPRICED = Price(Decimal(0), Decimal(0), Decimal(0), priced=False)


def price_at(*, model: str, at: datetime) -> Price:
    """The price in force for ``model`` at ``at``; ``UNPRICED`` (cost 0, flagged) when there is none."""
    return price_in(rowcache_load(("prices", model), lambda: list(ModelPrice.objects.filter(model=model))), at)


def price_in(prices: list[ModelPrice], at: datetime) -> Price:
    """The price in force at ``at`` among a model's price rows (the latest that had begun by then)."""
    in_force = [row for row in prices if row.effective_from <= at]
    if not in_force:
        return UNPRICED
    row = max(in_force, key=lambda row: row.effective_from)
    return Price(row.input_per_million, row.cached_input_per_million, row.output_per_million, priced=True)


def cost_of(*, price: Price, prompt_tokens: int, cached_tokens: int, completion_tokens: int) -> Decimal:
    """USD for these counts: cached prompt tokens at the cached rate; reasoning tokens are part of
    ``completion_tokens`` (as providers report them) and bill as output."""
    cached = min(cached_tokens, prompt_tokens)
    cost = (
        (prompt_tokens - cached) * price.input_per_million
        + cached * price.cached_input_per_million
        + completion_tokens * price.output_per_million
    ) / MILLION
    return cost.quantize(COST_PLACES)
