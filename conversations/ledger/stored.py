"""Stored completions: what /v1 keeps for requests with ``store: true``, and the reads behind OpenAI's API for them.

Every read takes the requesting user: another user's completion is simply not found.
Lists page by keyset on ``(created_at, id)``, fetching one row more than asked to
know whether more follow; they never count or offset.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

from django.contrib.auth.models import User
from django.db import connections
from django.db.models import BooleanField, QuerySet
from django.db.models.expressions import RawSQL

from conversations.core.errors import InvalidInput, NotFound
from conversations.models import ApiKey, ChatModel, Message, StoredCompletion

# What a completion id may look like ("chatcmpl-" and hex here; other servers' ids fit too).
ID_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
# Request fields kept apart from StoredCompletion.request.
SEPARATE_FIELDS = ("messages", "metadata")


def completion_id() -> str:
    """A new id in OpenAI's style."""
    return "chatcmpl-" + secrets.token_hex(12)


def stored_completion_build_turn(
    *,
    message: Message,
    messages: list[dict[str, str]],
    parameters: dict[str, Any],
    text: str,
    finish_reason: str,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    status: str,
    latency_ms: int,
) -> StoredCompletion:
    """A chat UI turn as a stored completion (unsaved), linked to its message, for the admin.

    Its request records the ``parameters`` the turn was sent with (max_tokens, temperature...).
    """
    model = message.conversation.model
    usage = None
    if completion_tokens is not None:
        usage = {
            "prompt_tokens": prompt_tokens or 0,
            "completion_tokens": completion_tokens,
            "total_tokens": (prompt_tokens or 0) + completion_tokens,
        }
    ident = completion_id()
    response = {
        "id": ident,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": message.model_name,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "finish_reason": finish_reason or None,
                "logprobs": None,
            }
        ],
        "usage": usage,
    }
    return StoredCompletion(
        id=ident,
        user_id=message.conversation.user_id,
        model=message.model_name,
        provider=model.provider.name if model else "",
        upstream_model=message.upstream_model,
        request={"model": message.model_name, "stream": True, **parameters},
        messages=messages,
        response=response,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        status=status,
        latency_ms=latency_ms,
        source=StoredCompletion.Source.CHAT,
        message=message,
    )


def stored_completion_build(
    *, api_key: ApiKey, chat_model: ChatModel, body: dict[str, Any], response: dict[str, Any], latency_ms: int
) -> StoredCompletion:
    """A finished completion to keep (unsaved), under the id its client saw."""
    usage = response.get("usage") or {}
    return StoredCompletion(
        id=response["id"],
        user_id=api_key.user_id,
        api_key=api_key,
        model=chat_model.name,
        provider=chat_model.provider.name,
        upstream_model=chat_model.upstream_model,
        request={k: v for k, v in body.items() if k not in SEPARATE_FIELDS},
        messages=body["messages"],
        response=response,
        metadata=body.get("metadata") or {},
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        latency_ms=latency_ms,
    )


def stored_completions_with_metadata(
    rows: QuerySet[StoredCompletion], *, key: str, value: str
) -> QuerySet[StoredCompletion]:
    """Rows whose metadata has ``key`` equal to ``value``.

    On PostgreSQL this is containment (``@>``), which the GIN index on metadata serves.
    SQLite has no containment on JSON, so there it looks the pair up among the object's
    members (``json_each``): a JSON path, as Django's key lookups build it, would read an
    integer-looking key ("1", "-1") as an array index, and cannot name a key holding '"'.
    """
    if connections[rows.db].vendor == "postgresql":
        return rows.filter(metadata__contains={key: value})
    alias = f"metadata_{len(rows.query.annotations)}"
    table = connections[rows.db].ops.quote_name(StoredCompletion._meta.db_table)
    pair = RawSQL(
        f"EXISTS (SELECT 1 FROM json_each({table}.metadata) WHERE key = %s AND value = %s)",
        (key, value),
        output_field=BooleanField(),
    )
    return rows.alias(**{alias: pair}).filter(**{alias: True})


def _known_id(completion_id: str) -> bool:
    """Whether ``completion_id`` could name a stored completion: others are not found without a query."""
    return ID_PATTERN.fullmatch(completion_id) is not None


def _owned(user: User) -> QuerySet[StoredCompletion]:
    """The user's completions stored through /v1 (chat UI turns are reviewed in the admin)."""
    return StoredCompletion.objects.filter(user=user, source=StoredCompletion.Source.API)


def _not_found(completion_id: str) -> NotFound:
    return NotFound(f"No chat completion found with id '{completion_id}'.")


async def stored_completions_list(
    *,
    user: User,
    after: str | None,
    limit: int,
    order: str,
    model: str | None,
    metadata: dict[str, str],
) -> tuple[list[StoredCompletion], bool]:
    """One page of the user's stored completions, and whether more follow.

    ``after`` is the id of the previous page's last item; one the user does not have is a 400.
    Each ``metadata`` pair must match exactly (compared as JSON, which SQLite and PostgreSQL both do).
    """
    rows = _owned(user).defer("request", "messages")
    if model:
        rows = rows.filter(model=model)
    for key, value in metadata.items():
        rows = stored_completions_with_metadata(rows, key=key, value=value)
    if after is not None:
        anchor = None
        if _known_id(after):
            anchor = await _owned(user).filter(pk=after).values_list("created_at", flat=True).afirst()
        if anchor is None:
            raise InvalidInput(f"No chat completion found with id '{after}' to list after.", param="after")
        if order == "asc":
            rows = rows.filter(created_at__gte=anchor).exclude(created_at=anchor, id__lte=after)
        else:
            rows = rows.filter(created_at__lte=anchor).exclude(created_at=anchor, id__gte=after)
    ordering = ("created_at", "id") if order == "asc" else ("-created_at", "-id")
    page = [c async for c in rows.order_by(*ordering)[: limit + 1]]
    return page[:limit], len(page) > limit


async def stored_completion_get(*, user: User, completion_id: str) -> StoredCompletion:
    """The user's stored completion, or ``NotFound``."""
    completion = await _owned(user).filter(pk=completion_id).afirst() if _known_id(completion_id) else None
    if completion is None:
        raise _not_found(completion_id)
    return completion


async def stored_completion_update(
    *, user: User, completion_id: str, metadata: dict[str, str] | None
) -> StoredCompletion:
    """Replace the metadata; None clears it."""
    completion = await stored_completion_get(user=user, completion_id=completion_id)
    completion.metadata = metadata or {}
    await completion.asave(update_fields=["metadata"])
    return completion


async def stored_completion_delete(*, user: User, completion_id: str) -> None:
    deleted = _known_id(completion_id) and (await _owned(user).filter(pk=completion_id).adelete())[0]
    if not deleted:
        raise _not_found(completion_id)


def stored_message_id(*, completion: StoredCompletion, index: int) -> str:
    return f"{completion.id}-{index}"


def stored_messages_page(
    *, completion: StoredCompletion, after: str | None, limit: int, order: str
) -> tuple[list[tuple[int, dict[str, Any]]], bool]:
    """One page of a completion's input messages with their indexes, and whether more follow."""
    indexed = list(enumerate(completion.messages))
    if order == "desc":
        indexed.reverse()
    if after is not None:
        ids = [stored_message_id(completion=completion, index=i) for i, _ in indexed]
        if after not in ids:
            raise InvalidInput(f"No message found with id '{after}' in this chat completion.", param="after")
        indexed = indexed[ids.index(after) + 1 :]
    return indexed[:limit], len(indexed) > limit


class CompletionAssembler:
    """Builds the ``chat.completion`` a stream amounts to, from the provider's chunks.

    Text, refusals and tool-call arguments are concatenated; a tool call's id, type
    and name are taken from its first delta, so providers repeating them are fine.
    """

    def __init__(self, *, id: str, model: str) -> None:
        self.id = id
        self.model = model
        self.created: int | None = None
        self.extra: dict[str, Any] = {}
        self.usage: dict[str, Any] | None = None
        self.choices: dict[int, dict[str, Any]] = {}
        self.tool_calls: dict[int, dict[int, dict[str, Any]]] = {}

    def add(self, chunk: dict[str, Any]) -> None:
        self.created = self.created or chunk.get("created")
        for key in ("system_fingerprint", "service_tier"):
            if chunk.get(key) is not None:
                self.extra[key] = chunk[key]
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            self._choice(choice)

    def _choice(self, choice: dict[str, Any]) -> None:
        index = choice.get("index", 0)
        built = self.choices.setdefault(
            index,
            {
                "index": index,
                "message": {"role": "assistant", "content": None, "refusal": None},
                "logprobs": None,
                "finish_reason": None,
            },
        )
        message = built["message"]
        delta = choice.get("delta") or {}
        for key in ("content", "refusal"):
            if delta.get(key):
                message[key] = (message[key] or "") + delta[key]
        if delta.get("function_call"):
            _merge_call(message.setdefault("function_call", {"name": "", "arguments": ""}), delta["function_call"])
        for call in delta.get("tool_calls") or []:
            calls = self.tool_calls.setdefault(index, {})
            known = calls.setdefault(
                call.get("index", 0), {"id": None, "type": call.get("type") or "function", "function": {}}
            )
            known["id"] = known["id"] or call.get("id")
            if call.get("function"):
                _merge_call(known["function"], call["function"])
        if choice.get("logprobs"):
            logprobs = built["logprobs"] = built["logprobs"] or {"content": None, "refusal": None}
            for key in ("content", "refusal"):
                if choice["logprobs"].get(key):
                    logprobs[key] = (logprobs[key] or []) + choice["logprobs"][key]
        if choice.get("finish_reason"):
            built["finish_reason"] = choice["finish_reason"]

    def completion(self) -> dict[str, Any]:
        choices = []
        for index, choice in sorted(self.choices.items()):
            if calls := self.tool_calls.get(index):
                choice["message"]["tool_calls"] = [call for _, call in sorted(calls.items())]
            choices.append(choice)
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created or int(time.time()),
            "model": self.model,
            "choices": choices,
            "usage": self.usage,
            **self.extra,
        }


def _merge_call(known: dict[str, Any], delta: dict[str, Any]) -> None:
    """A function call's name comes once; its arguments come in pieces."""
    known["name"] = known.get("name") or delta.get("name") or ""
    known["arguments"] = known.get("arguments", "") + (delta.get("arguments") or "")
