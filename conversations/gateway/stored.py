"""/v1 stored completions: list, retrieve, update and delete them, and list their input messages."""

from __future__ import annotations

import re
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from conversations.gateway import views
from conversations.gateway.api_error import ApiError
from conversations.gateway.validation.values import metadata_validate
from conversations.gateway.views import ApiRequest, _json_body, api_view
from conversations.ledger.stored import (
    stored_completion_delete,
    stored_completion_get,
    stored_completion_update,
    stored_completions_list,
    stored_message_id,
    stored_messages_page,
)
from conversations.models import StoredCompletion

PAGE_DEFAULT, PAGE_MAX = 20, 100
METADATA_QUERY = re.compile(r"metadata\[(.+)\]")


@csrf_exempt
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    """One URL, two endpoints: GET lists stored completions, anything else goes to create (POST)."""
    view = completions_list if request.method == "GET" else views.chat_completions
    return await view(request)


def _page(request: HttpRequest) -> tuple[str | None, int, str]:
    """The ``after``, ``limit`` and ``order`` query parameters of a list (every parameter free of U+0000,
    which no text column holds)."""
    for key, value in request.GET.items():
        if "\x00" in key or "\x00" in value:
            raise ApiError("Query parameters may not contain U+0000.", param=key.replace("\x00", ""))
    raw = request.GET.get("limit", str(PAGE_DEFAULT))
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= PAGE_MAX:
        raise ApiError(
            f"Invalid value for 'limit': expected an integer between 1 and {PAGE_MAX}, got {raw!r}.", param="limit"
        )
    order = request.GET.get("order", "asc")
    if order not in ("asc", "desc"):
        raise ApiError(f"Invalid value for 'order': expected one of 'asc', 'desc', got {order!r}.", param="order")
    return request.GET.get("after") or None, int(raw), order


def _list(data: list[dict[str, Any]], has_more: bool) -> JsonResponse:
    first_id, last_id = (data[0]["id"], data[-1]["id"]) if data else (None, None)
    return JsonResponse(
        {"object": "list", "data": data, "first_id": first_id, "last_id": last_id, "has_more": has_more}
    )


def _completion_json(completion: StoredCompletion) -> dict[str, Any]:
    return {**completion.response, "metadata": completion.metadata}


def _message_json(completion: StoredCompletion, index: int, message: dict[str, Any]) -> dict[str, Any]:
    """A stored input message as OpenAI lists it (``ChatCompletionStoreMessage``): plain text in ``content``,
    parts also in ``content_parts``, ``refusal`` null unless the message had one."""
    content = message.get("content")
    parts = content if isinstance(content, list) else None
    if parts is not None:
        content = "".join(p.get("text", "") for p in parts if p.get("type") == "text") or None
    return {
        **message,
        "id": stored_message_id(completion=completion, index=index),
        "content": content,
        "name": message.get("name"),
        "refusal": message.get("refusal"),
        "content_parts": parts,
    }


def _metadata_update(body: Any) -> dict[str, str] | None:
    """The body of an update: ``{"metadata": {...} | null}`` and nothing else."""
    if not isinstance(body, dict):
        raise ApiError("The request body must be a JSON object.")
    for field in body:
        if field != "metadata":
            raise ApiError(f"Unrecognized request argument supplied: {field}", param=str(field))
    if "metadata" not in body:
        raise ApiError("Missing required parameter: 'metadata'.", param="metadata")
    return metadata_validate(body["metadata"])


@api_view("GET")
async def completions_list(request: ApiRequest) -> HttpResponseBase:
    after, limit, order = _page(request)
    # The last value of each metadata[...] parameter, as request.GET.items() gives it.
    metadata = {m[1]: values[-1] for key, values in request.GET.lists() if (m := METADATA_QUERY.fullmatch(key))}
    completions, has_more = await stored_completions_list(
        user=request.api_key.user,
        after=after,
        limit=limit,
        order=order,
        model=request.GET.get("model") or None,
        metadata=metadata,
    )
    return _list([_completion_json(c) for c in completions], has_more)


@api_view("GET", "POST", "DELETE", writes=("POST", "DELETE"))
async def completion_detail(request: ApiRequest, completion_id: str) -> HttpResponseBase:
    user = request.api_key.user
    if request.method == "DELETE":
        await stored_completion_delete(user=user, completion_id=completion_id)
        return JsonResponse({"object": "chat.completion.deleted", "id": completion_id, "deleted": True})
    if request.method == "POST":
        metadata = _metadata_update(_json_body(request))
        completion = await stored_completion_update(user=user, completion_id=completion_id, metadata=metadata)
    else:
        completion = await stored_completion_get(user=user, completion_id=completion_id)
    return JsonResponse(_completion_json(completion))


@api_view("GET")
async def completion_messages(request: ApiRequest, completion_id: str) -> HttpResponseBase:
    after, limit, order = _page(request)
    completion = await stored_completion_get(user=request.api_key.user, completion_id=completion_id)
    messages, has_more = stored_messages_page(completion=completion, after=after, limit=limit, order=order)
    return _list([_message_json(completion, index, message) for index, message in messages], has_more)
