"""Probes for operators: liveness, readiness, Prometheus metrics."""

from asgiref.sync import sync_to_async
from django.http import (
    HttpRequest,
    HttpResponse,
    JsonResponse,
)

from conversations.core.errors import NotFound
from conversations.core.metrics import metrics_exposition
from conversations.providers.health import local_model_status, readiness_check


def healthz(request: HttpRequest) -> JsonResponse:
    """The process is alive and serving."""
    return JsonResponse({"status": "ok"})


async def readyz(request: HttpRequest) -> JsonResponse:
    """The database and the channel layer answer; 503 otherwise.

    The local model's state is reported too, but does not decide readiness: every page
    and every other provider work while it restarts.
    """
    checks = await readiness_check()
    ready = all(result == "ok" for result in checks.values())
    local_model = await sync_to_async(local_model_status, thread_sensitive=False)()
    body = {"status": "ok" if ready else "unavailable", **checks, "local_model": local_model.state}
    return JsonResponse(body, status=200 if ready else 503)


def metrics(request: HttpRequest) -> HttpResponse:
    """This worker's Prometheus metrics, for a scraper holding ``METRICS_TOKEN`` (404 while none is set)."""
    response = metrics_exposition(request)
    if response is None:
        raise NotFound("No metrics here.")
    return response
