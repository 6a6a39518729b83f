"""Stored completions as training data: JSONL in OpenAI's chat fine-tuning format.

Each line is ``{"messages": [...the input messages..., the assistant's reply]}``, with the
request's ``tools`` (and ``parallel_tool_calls``) beside them when it had any. Only
completions that finished normally are exported: errors have no reply, and stopped or
interrupted ones end mid-sentence, which is not something to train on.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from django.db.models import QuerySet

from conversations.models import StoredCompletion

EXPORT_CHUNK = 500
# Keys of the reply message a fine-tuning example carries when set; nulls are dropped.
REPLY_KEYS = ("content", "refusal", "tool_calls", "function_call")


def fine_tuning_reply(response: dict[str, Any]) -> dict[str, Any] | None:
    """The assistant message of a chat.completion's first choice, or None if it said nothing."""
    choices = response.get("choices") if isinstance(response, dict) else None
    if not choices or not isinstance(choices[0], dict):
        return None
    message = choices[0].get("message")
    if not isinstance(message, dict):
        return None
    reply = {key: message[key] for key in REPLY_KEYS if message.get(key) not in (None, "", [])}
    return {"role": "assistant", **reply} if reply else None


def fine_tuning_example(completion: StoredCompletion) -> dict[str, Any] | None:
    """One training example, or None for a completion that has no finished reply to learn from."""
    if completion.status != StoredCompletion.Status.COMPLETED:
        return None
    reply = fine_tuning_reply(completion.response)
    if reply is None or not isinstance(completion.messages, list):
        return None
    example: dict[str, Any] = {"messages": [*completion.messages, reply]}
    request = completion.request if isinstance(completion.request, dict) else {}
    if request.get("tools"):
        example["tools"] = request["tools"]
        if request.get("parallel_tool_calls") is not None:
            example["parallel_tool_calls"] = request["parallel_tool_calls"]
    return example


def _line(completion: StoredCompletion) -> str | None:
    example = fine_tuning_example(completion)
    return None if example is None else json.dumps(example, ensure_ascii=False) + "\n"


def _export_rows(queryset: QuerySet[StoredCompletion]) -> QuerySet[StoredCompletion]:
    """Only what an example needs, oldest first, whatever the list deferred or ordered."""
    return (
        queryset.defer(None)
        .select_related(None)
        .filter(status=StoredCompletion.Status.COMPLETED)
        .only("id", "status", "request", "messages", "response")
        .order_by("created_at", "id")
    )


def fine_tuning_jsonl(queryset: QuerySet[StoredCompletion]) -> Iterator[str]:
    """The JSONL lines of a selection, read in chunks so a large export never sits in memory."""
    for completion in _export_rows(queryset).iterator(chunk_size=EXPORT_CHUNK):
        if (line := _line(completion)) is not None:
            yield line


async def afine_tuning_jsonl(queryset: QuerySet[StoredCompletion]) -> AsyncIterator[str]:
    """The same lines for an ASGI server, which streams async iterators without buffering them."""
    async for completion in _export_rows(queryset).aiterator(chunk_size=EXPORT_CHUNK):
        if (line := _line(completion)) is not None:
            yield line
