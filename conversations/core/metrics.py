"""Prometheus metrics of this worker process, served at ``/metrics`` to a scraper holding ``METRICS_TOKEN``.

Each Daphne worker counts in its own registry (prometheus-client's default one, with the
process collector) and is scraped as a target of its own; PromQL's ``sum`` adds the
workers up. Multiprocess mode would instead need a directory shared by every worker,
cleaned at each start, and does not reach across containers or hosts, where compose and
most deployments put the workers.

Labels come only from what admins configure (model names, deployments), the code's own
vocabulary (sources, statuses, error kinds) and URL patterns: never from what a request
says. Per-user series exist only with ``METRICS_PER_USER``.
"""

from __future__ import annotations

import secrets
from decimal import Decimal

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

# No *_created series beside each counter and histogram: half the series to store.
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

http_requests = Counter(
    "chatweb_http_requests", "HTTP requests answered, by method, URL pattern and status.", ["method", "route", "status"]
)
http_duration = Histogram(
    "chatweb_http_request_duration_seconds",
    "Time to answer an HTTP request (for a stream, until its headers), by method and URL pattern.",
    ["method", "route"],
)
completions = Counter(
    "chatweb_completions",
    "Completions ended, by model, the deployment that answered (or none), source (chat, api) and status.",
    ["model", "deployment", "source", "status"],
)
completion_duration = Histogram(
    "chatweb_completion_duration_seconds",
    "A completion's duration, from its start to its end, by model and source.",
    ["model", "source"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300),
)
first_token = Histogram(
    "chatweb_completion_first_token_seconds",
    "Time from a streamed completion's start to its first content, by model and source.",
    ["model", "source"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30),
)
tokens = Counter(
    "chatweb_tokens", "Tokens of ended completions, by model and direction (input, output).", ["model", "direction"]
)
cost = Counter("chatweb_cost_usd", "Cost of ended completions in USD, by model.", ["model"])
upstream_errors = Counter(
    "chatweb_upstream_errors",
    "Failed calls to a deployment, fallbacks included, by deployment and kind "
    "(connection, timeout, rate_limited, server_error, client_error, other).",
    ["deployment", "kind"],
)
streams_live = Gauge("chatweb_streams_live", "Completions streaming from a provider now, by source.", ["source"])
sockets_open = Gauge("chatweb_sockets_open", "Chat websockets open now.")
layer_send_failures = Counter(
    "chatweb_channel_layer_send_failures", "Group sends to the channel layer that failed (each retry counts)."
)
# Only with METRICS_PER_USER: one series per user and label, labelled with the user's id.
user_completions = Counter("chatweb_user_completions", "Completions ended, by user id.", ["user_id"])
user_tokens = Counter(
    "chatweb_user_tokens", "Tokens of ended completions, by user id and direction.", ["user_id", "direction"]
)
user_cost = Counter("chatweb_user_cost_usd", "Cost of ended completions in USD, by user id.", ["user_id"])


def http_observe(request: HttpRequest, status: int, seconds: float) -> None:
    """Count an answered request under its URL pattern: unmatched paths share one label."""
    match = getattr(request, "resolver_match", None)
    if match is not None:
        route = "/" + match.route
    elif request.path.startswith("/" + settings.STATIC_URL.lstrip("/")):
        route = "static"
    else:
        route = "unmatched"
    method = request.method if request.method in METHODS else "other"
    http_requests.labels(method, route, str(status)).inc()
    http_duration.labels(method, route).observe(seconds)


def completion_observe(
    *,
    model: str,
    deployment: str,
    source: str,
    status: str,
    user_id: int,
    seconds: float,
    first_token_seconds: float | None,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    cost_usd: Decimal | None,
) -> None:
    """Count an ended completion: its status, timings, tokens and cost."""
    completions.labels(model, deployment, source, status).inc()
    completion_duration.labels(model, source).observe(seconds)
    if first_token_seconds is not None:
        first_token.labels(model, source).observe(first_token_seconds)
    tokens.labels(model, "input").inc(prompt_tokens or 0)
    tokens.labels(model, "output").inc(completion_tokens or 0)
    cost.labels(model).inc(float(cost_usd or 0))
    if settings.METRICS_PER_USER:
        user = str(user_id)
        user_completions.labels(user).inc()
        user_tokens.labels(user, "input").inc(prompt_tokens or 0)
        user_tokens.labels(user, "output").inc(completion_tokens or 0)
        user_cost.labels(user).inc(float(cost_usd or 0))


def metrics_exposition(request: HttpRequest) -> HttpResponse | None:
    """This worker's metrics for a request bearing ``METRICS_TOKEN``; 401 without it; None (404) when unset."""
    token = settings.METRICS_TOKEN
    if not token:
        return None
    supplied = request.headers.get("Authorization", "")
    if not secrets.compare_digest(supplied.encode(), f"Bearer {token}".encode()):
        response = HttpResponse(
            "A bearer token is needed to read the metrics.\n", status=401, content_type="text/plain"
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)
