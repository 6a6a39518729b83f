"""Pages refuse query parameters and form fields holding U+0000 (400): PostgreSQL's text columns cannot
take it, so an admin filter or search, a chat message or a title passing it to a query failed with a 500.
No browser sends it from what a person types. /v1 checks its own input."""

from __future__ import annotations

from typing import cast

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponseBadRequest
from django.http.response import HttpResponseBase
from django.utils.decorators import sync_and_async_middleware

from conversations.core.requests import AnyGetResponse, AsyncGetResponse, GetResponse


def _holds_nul(request: HttpRequest) -> bool:
    fields = [request.GET] if request.method == "GET" else [request.GET, request.POST]
    return any(
        "\x00" in key or any("\x00" in value for value in values) for query in fields for key, values in query.lists()
    )


@sync_and_async_middleware
def nul_query_middleware(get_response: AnyGetResponse) -> AnyGetResponse:
    refused = "Query parameters and form fields may not contain U+0000."

    if iscoroutinefunction(get_response):
        get_response_async = cast(AsyncGetResponse, get_response)  # checked on the line above

        async def middleware_async(request: HttpRequest) -> HttpResponseBase:
            return HttpResponseBadRequest(refused) if _holds_nul(request) else await get_response_async(request)

        return middleware_async

    get_response_sync = cast(GetResponse, get_response)  # not a coroutine function

    def middleware(request: HttpRequest) -> HttpResponseBase:
        return HttpResponseBadRequest(refused) if _holds_nul(request) else get_response_sync(request)

    return middleware
