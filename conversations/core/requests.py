"""The request of a signed-in user, for typing the views behind ``login_required``; the request the
request log gave an id; and the shapes of a middleware's ``get_response``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from django.http import HttpRequest
from django.http.response import HttpResponseBase

if TYPE_CHECKING:  # the request log's middleware imports this module while settings load, before the models
    from django.contrib.auth.models import User
    from django_htmx.middleware import HtmxDetails


class SignedInRequest(HttpRequest):
    user: User
    htmx: HtmxDetails  # django-htmx's middleware: whether htmx sent the request, and its headers


class LoggedRequest(HttpRequest):
    """A request through ``conversations.core.logs.request_log_middleware``, which sets its id."""

    request_id: str


GetResponse = Callable[[HttpRequest], HttpResponseBase]
AsyncGetResponse = Callable[[HttpRequest], Awaitable[HttpResponseBase]]
# What Django passes a middleware factory (and what it returns): one of the two.
AnyGetResponse = Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]
