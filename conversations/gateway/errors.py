"""The one place where chatweb's domain errors become /v1 answers, in OpenAI's shapes and statuses."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from conversations.core.errors import (
    ChatwebError,
    DeploymentsExhausted,
    InvalidInput,
    KeyExpired,
    ModelUnavailable,
    NotFound,
    QuotaExceeded,
    RateLimited,
    ScopeMissing,
    UpstreamFailed,
)
from conversations.gateway.api_error import ApiError
from conversations.ledger.limits import RateWindow


def api_error_for(exc: ChatwebError) -> ApiError:
    """``exc`` as the client of /v1 should see it."""
    if isinstance(exc, InvalidInput):
        return ApiError(exc.message, param=exc.param, code=exc.code)
    if isinstance(exc, ModelUnavailable):  # OpenAI names no param here
        return ApiError(exc.message, status=404, code="model_not_found")
    if isinstance(exc, KeyExpired):
        return ApiError(exc.message, status=401, code="invalid_api_key")
    if isinstance(exc, ScopeMissing):  # OpenAI's answer to a restricted key: 401, no code
        return ApiError(exc.message, status=401)
    if isinstance(exc, NotFound):
        return ApiError(exc.message, status=404)
    if isinstance(exc, RateLimited):
        return ApiError(exc.message, status=429, type=exc.kind, code="rate_limit_exceeded", headers=_rate_headers(exc))
    if isinstance(exc, QuotaExceeded):
        return ApiError(exc.message, status=429, type="insufficient_quota", code="insufficient_quota")
    if isinstance(exc, DeploymentsExhausted):
        return ApiError(exc.message, status=503, type="service_unavailable", code="service_unavailable")
    if isinstance(exc, UpstreamFailed):
        return _upstream_error(exc)
    return ApiError(exc.message, status=500, type="server_error")


def api_error_body(exc: UpstreamFailed) -> dict[str, Any]:
    """The ``error`` event that ends a stream which failed after it started."""
    return api_error_for(exc).body()


def _upstream_error(exc: UpstreamFailed) -> ApiError:
    """The provider's failure with its own status; an unreachable one is 502, and a 429 always says when to retry."""
    headers = None
    if exc.retry_after is not None or exc.status == 429:
        headers = {"Retry-After": str(max(1, round(exc.retry_after or 0)))}
    return ApiError(
        exc.message, status=exc.status or 502, type=exc.type, param=exc.param, code=exc.code, headers=headers
    )


def ratelimit_headers(windows: Iterable[RateWindow]) -> dict[str, str]:
    """OpenAI's ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` headers."""
    headers = {}
    for window in windows:
        headers[f"x-ratelimit-limit-{window.kind}"] = str(window.limit)
        headers[f"x-ratelimit-remaining-{window.kind}"] = str(window.remaining)
        if window.reset_seconds is not None:
            headers[f"x-ratelimit-reset-{window.kind}"] = f"{window.reset_seconds}s"
    return headers


def _rate_headers(exc: RateLimited) -> dict[str, str]:
    """The headers of the limit that said no, and when to retry."""
    headers = ratelimit_headers([RateWindow(exc.kind, exc.limit, exc.remaining, exc.retry_after)])
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    return headers
