"""/v1: the OpenAI-compatible endpoints. Thin: authenticate, parse, one service call, JSON."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, cast

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from conversations.accounts.api_keys import api_key_authenticate, api_key_require_write
from conversations.core.errors import ChatwebError
from conversations.core.jsoninput import JsonInputError, json_input_parse
from conversations.core.requests import LoggedRequest
from conversations.gateway.api_error import ApiError
from conversations.gateway.errors import (
    api_error_body,
    api_error_for,
    ratelimit_headers,
)
from conversations.gateway.handler import after_response
from conversations.gateway.relay import (
    gateway_complete,
    gateway_model,
    gateway_models,
    gateway_stream,
)
from conversations.gateway.validation.request import chat_request_validate
from conversations.models import ApiKey, ChatModel

View = Callable[..., Coroutine[Any, Any, HttpResponseBase]]


class ApiRequest(LoggedRequest):
    """A /v1 request ``api_view`` let through: its key (set there) and its id (from the request log)."""

    api_key: ApiKey


def error_response(error: ApiError) -> JsonResponse:
    return JsonResponse(error.body(), status=error.status, headers=error.headers or None)


def api_view(*methods: str, writes: tuple[str, ...] = ()) -> Callable[[View], View]:
    """Guard a /v1 endpoint: method, Bearer key (one with the write scope for the methods in ``writes``),
    and OpenAI-shaped errors, domain errors included (x-request-id comes from conversations.core.logs)."""

    def decorate(view: View) -> View:
        @csrf_exempt
        @functools.wraps(view)
        async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            response: HttpResponseBase
            try:
                if request.method not in methods:
                    raise ApiError(f"Method {request.method} is not allowed here.", status=405)
                api_request = cast(ApiRequest, request)  # the class only declares the attribute set here
                api_request.api_key = await _authenticate(request)
                if request.method in writes:
                    api_key_require_write(key=api_request.api_key, method=request.method)
                response = await view(api_request, *args, **kwargs)
            except ApiError as error:
                response = error_response(error)
            except ChatwebError as error:
                response = error_response(api_error_for(error))
            return response

        return wrapper

    return decorate


async def _authenticate(request: HttpRequest) -> ApiKey:
    scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        raise ApiError(
            "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'; "
            "create one on your account page.",
            status=401,
            code="missing_api_key",
        )
    key = await api_key_authenticate(raw=raw.strip())
    if key is None:
        shown = raw.strip()[:8] + "*" * 4 + raw.strip()[-4:] if len(raw.strip()) > 12 else "****"
        raise ApiError(f"Incorrect API key provided: {shown}.", status=401, code="invalid_api_key")
    return key


def _json_body(request: HttpRequest) -> Any:
    if request.content_type != "application/json":
        raise ApiError("Send the request body as JSON with 'Content-Type: application/json'.")
    try:
        raw = request.body
    except RequestDataTooBig:
        raise ApiError("The request body is too large.", status=413, code="request_too_large") from None
    try:
        return json_input_parse(raw)
    except JsonInputError as exc:
        raise ApiError(str(exc), code="invalid_json") from None


def _model_json(model: ChatModel) -> dict[str, Any]:
    return {
        "id": model.name,
        "object": "model",
        "created": int(model.provider.created_at.timestamp()),
        "owned_by": model.provider.name,
    }


@api_view("GET")
async def models_list(request: ApiRequest) -> HttpResponseBase:
    models = await gateway_models(api_key=request.api_key)
    return JsonResponse({"object": "list", "data": [_model_json(m) for m in models]})


@api_view("GET")
async def models_retrieve(request: ApiRequest, model: str) -> HttpResponseBase:
    return JsonResponse(_model_json(await gateway_model(name=model, api_key=request.api_key)))


@api_view("POST", writes=("POST",))
async def chat_completions(request: ApiRequest) -> HttpResponseBase:
    body = chat_request_validate(_json_body(request))
    if body.get("stream"):
        events, windows = await gateway_stream(
            body=body, api_key=request.api_key, request_id=request.request_id, error_body=api_error_body
        )
        return StreamingHttpResponse(
            events,
            content_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **ratelimit_headers(windows)},
        )
    completion, windows = await gateway_complete(
        body=body,
        api_key=request.api_key,
        request_id=request.request_id,
        later=functools.partial(after_response, request),
    )
    return JsonResponse(completion, headers=ratelimit_headers(windows) or None)


@api_view("GET", "POST", "DELETE", "PUT", "PATCH")
async def not_found(request: ApiRequest, rest: str = "") -> HttpResponseBase:
    raise ApiError(f"Unknown request URL: {request.method} {request.path}.", status=404, code="unknown_url")
