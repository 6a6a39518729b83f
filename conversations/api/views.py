"""/v1: the OpenAI-compatible endpoints. Thin: authenticate, parse, one service call, JSON."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from ..jsoninput import JsonInputError, json_input_parse
from ..services.api_keys import api_key_authenticate
from ..services.gateway import gateway_complete, gateway_model, gateway_models, gateway_stream
from .handler import after_response
from .validation import ApiError, chat_request_validate

View = Callable[..., Awaitable[HttpResponse]]


def error_response(error: ApiError) -> JsonResponse:
    return JsonResponse(error.body(), status=error.status, headers=error.headers or None)


def api_view(*methods: str) -> Callable[[View], View]:
    """Guard a /v1 endpoint: method, Bearer key, and OpenAI-shaped errors (x-request-id comes from chatweb.logs)."""

    def decorate(view: View) -> View:
        @csrf_exempt
        @functools.wraps(view)
        async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            try:
                if request.method not in methods:
                    raise ApiError(f"Method {request.method} is not allowed here.", status=405)
                request.api_key = await _authenticate(request)
                response = await view(request, *args, **kwargs)
            except ApiError as error:
                response = error_response(error)
            return response

        return wrapper

    return decorate


async def _authenticate(request: HttpRequest) -> Any:
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


def _model_json(model: Any) -> dict[str, Any]:
    return {
        "id": model.name,
        "object": "model",
        "created": int(model.provider.created_at.timestamp()),
        "owned_by": model.provider.name,
    }


@api_view("GET")
async def models_list(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"object": "list", "data": [_model_json(m) for m in await gateway_models()]})


@api_view("GET")
async def models_retrieve(request: HttpRequest, model: str) -> HttpResponse:
    return JsonResponse(_model_json(await gateway_model(name=model)))


@api_view("POST")
async def chat_completions(request: HttpRequest) -> HttpResponse:
    body = chat_request_validate(_json_body(request))
    if body.get("stream"):
        events = await gateway_stream(body=body, api_key=request.api_key, request_id=request.request_id)
        return StreamingHttpResponse(
            events,
            content_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    completion = await gateway_complete(
        body=body, api_key=request.api_key, request_id=request.request_id,
        later=functools.partial(after_response, request),
    )
    return JsonResponse(completion)


@api_view("GET", "POST", "DELETE", "PUT", "PATCH")
async def not_found(request: HttpRequest, rest: str = "") -> HttpResponse:
    raise ApiError(f"Unknown request URL: {request.method} {request.path}.", status=404, code="unknown_url")
