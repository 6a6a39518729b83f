"""The request of a signed-in user, for typing the views behind ``login_required``."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails


class SignedInRequest(HttpRequest):
    user: User
    htmx: HtmxDetails  # django-htmx's middleware: whether htmx sent the request, and its headers
