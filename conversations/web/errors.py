"""The one place pages turn domain errors into HTTP (``gateway/errors.py`` does it for /v1).

``NotFound`` (another user's id included) is the 404 page. Any other ``ChatwebError`` a view lets
through is said in a sentence: a form posted from a page goes back to it (``next``, if it is this
site's) with the sentence as a notice; other requests get a 400 with the sentence. Views that show
a form again with what was typed catch ``InvalidInput`` themselves.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect
from django.utils.deprecation import MiddlewareMixin
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.defaults import page_not_found

from conversations.core.errors import ChatwebError, NotFound


def page_back(request: HttpRequest, default: str = "home") -> HttpResponse:
    """Back to the page a form came from (``next``), if it is this site's."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    safe = url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return redirect(target if safe else default)


class DomainErrorMiddleware(MiddlewareMixin):
    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, NotFound):
            return page_not_found(request, Http404(exception.message))
        if not isinstance(exception, ChatwebError):
            return None
        if request.method == "POST":
            messages.error(request, exception.message)
            return page_back(request)
        return HttpResponseBadRequest(exception.message, content_type="text/plain; charset=utf-8")
