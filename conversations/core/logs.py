"""Logging: one line per request and per completion, as text or (LOG_FORMAT=json) JSON.

Lines carry ids, models, statuses, latencies and token counts; never prompts,
replies, keys or other secrets.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from typing import Any, cast

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.utils.decorators import sync_and_async_middleware

from conversations.core.metrics import http_observe
from conversations.core.requests import AnyGetResponse, AsyncGetResponse, GetResponse, LoggedRequest

request_logger = logging.getLogger("chatweb.requests")

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra`` fields a call added to its log record."""
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **record_fields(record),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger message key=value ...``"""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in record_fields(record).items())
        return super().format(record) + (f" {fields}" if fields else "")


def _user_id(request: HttpRequest) -> int | None:
    api_key = getattr(request, "api_key", None)
    if api_key is not None:
        key_user_id: int = api_key.user_id  # an ApiKey, set by the /v1 views (a room above this one)
        return key_user_id
    # Only a user something already loaded (sync views cache it in one attribute, async in another).
    user = getattr(request, "_cached_user", None) or getattr(request, "_acached_user", None)
    return user.pk if user is not None and user.is_authenticated else None


def _log(request: LoggedRequest, response: HttpResponseBase, started: float) -> None:
    seconds = time.monotonic() - started
    http_observe(request, response.status_code, seconds)
    request_logger.info(
        "%s %s %s",
        request.method,
        request.path,
        response.status_code,
        extra={
            "request_id": request.request_id,
            "user_id": _user_id(request),
            "status": response.status_code,
            "latency_ms": round(seconds * 1000, 1),
        },
    )


@sync_and_async_middleware
def request_log_middleware(get_response: AnyGetResponse) -> AnyGetResponse:
    """Give every request an id (answered as ``x-request-id``), log one line for it and count it in the metrics."""

    def start(request: HttpRequest) -> tuple[LoggedRequest, float]:
        logged = cast(LoggedRequest, request)  # the class only declares the attribute set here
        logged.request_id = "req_" + secrets.token_hex(12)
        return logged, time.monotonic()

    def finish(request: LoggedRequest, response: HttpResponseBase, started: float) -> HttpResponseBase:
        response["x-request-id"] = request.request_id
        _log(request, response, started)
        return response

    if iscoroutinefunction(get_response):
        get_response_async = cast(AsyncGetResponse, get_response)  # checked on the line above

        async def middleware_async(request: HttpRequest) -> HttpResponseBase:
            logged, started = start(request)
            return finish(logged, await get_response_async(request), started)

        return middleware_async

    get_response_sync = cast(GetResponse, get_response)  # not a coroutine function

    def middleware(request: HttpRequest) -> HttpResponseBase:
        logged, started = start(request)
        return finish(logged, get_response_sync(request), started)

    return middleware
