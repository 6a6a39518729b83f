"""The start of a completion: the model asked for, checked against the caller's access, and the usage
reserved for its worst case, for a /v1 call or a chat reply."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import Q

from conversations.accounts.access import (
    access_cached,
    access_require,
    model_unavailable,
)
from conversations.core.rowcache import rowcache_get, rowcache_set
from conversations.ledger.metering.metered import Metered
from conversations.ledger.usage import usage_reserve, usage_reserve_cached
from conversations.models import (
    ApiKey,
    ChatModel,
    Message,
    StoredCompletion,
    UsageRecord,
)
from conversations.providers.routes import routes_of
from conversations.providers.tokens import messages_tokens_guess


def metering_model(*, name: str, api_key: ApiKey | None = None) -> ChatModel:
    """The enabled chat model called ``name`` or aliased so, or ``ModelUnavailable``; with ``api_key``,
    also when the key (or its user) may not use it, in the same words."""
    model = rowcache_get(("model", name))
    if model is None:
        model = (
            ChatModel.objects.filter(Q(name=name) | Q(aliases__name=name), enabled=True, provider__enabled=True)
            .select_related("provider")
            .first()
        )
        if model is None:
            raise model_unavailable(name)
        rowcache_set(("model", name), model)
    if api_key is not None:
        access_require(user=api_key.user, model=model, name=name, api_key=api_key)
    return model


async def metering_begin_api(*, body: dict[str, Any], api_key: ApiKey, request_id: str) -> Metered:
    """A /v1 call's model, checked against the key's access, and its usage reservation (or ``QuotaExceeded``).

    When the model, the user's access, prices and limits are cached and neither the user
    nor the key has limits, this makes no trip to the database thread: the call's record
    is written when it ends.
    """
    model: ChatModel | None = rowcache_get(("model", body["model"]))
    access = access_cached(user_id=api_key.user_id)
    record: UsageRecord | None = None
    if model is not None and access is not None and not api_key.has_limits:
        access_require(user=api_key.user, model=model, name=body["model"], api_key=api_key, access=access)
        record = usage_reserve_cached(api_key=api_key, model=model.name, **_reservation_args(body, model, api_key))
    if model is None or record is None:  # a record is reserved above only with a model
        model, record = await sync_to_async(_model_and_reservation)(body=body, api_key=api_key)
    return Metered(
        model=model,
        name=model.name,
        user_id=api_key.user_id,
        source=StoredCompletion.Source.API,
        record=record,
        request_id=request_id,
    )


def _reservation_args(body: dict[str, Any], model: ChatModel, api_key: ApiKey) -> dict[str, Any]:
    """The call's worst case: each of its ``n`` choices may write its output limit, or the default reserve."""
    output_limit = body.get("max_completion_tokens") or body.get("max_tokens") or settings.USAGE_RESERVE_OUTPUT_TOKENS
    return {
        "user": api_key.user,
        "provider": model.provider.name,
        "prompt_tokens": messages_tokens_guess(body["messages"]),
        "max_output_tokens": output_limit * (body.get("n") or 1),
    }


def _model_and_reservation(*, body: dict[str, Any], api_key: ApiKey) -> tuple[ChatModel, UsageRecord]:
    """The requested model and the call's usage reservation, in one trip to the database thread."""
    model = metering_model(name=body["model"], api_key=api_key)
    record = usage_reserve(api_key=api_key, model=model.name, defer=True, **_reservation_args(body, model, api_key))
    routes_of(model)  # loaded here too, on the database thread
    return model, record


def metering_reserve_turn(
    *,
    user: User,
    model: ChatModel,
    reply: Message,
    history: list[dict[str, Any]],
    max_output_tokens: int | None,
) -> UsageRecord:
    """Reserve a chat reply's worst case (the ``max_tokens`` it is sent with, else the default), or
    ``QuotaExceeded``."""
    return usage_reserve(
        user=user,
        model=model.name,
        provider=model.provider.name,
        prompt_tokens=messages_tokens_guess(history),
        max_output_tokens=max_output_tokens,
        message=reply,
    )


def metering_for_turn(*, message: Message) -> Metered:
    """The chat reply ``message`` (with its conversation, model and provider) as a metered completion."""
    model = message.conversation.model
    if model is not None:
        routes_of(model)  # loaded here, on the database thread
    return Metered(
        model=model,
        name=message.model_name,
        user_id=message.conversation.user_id,
        source=StoredCompletion.Source.CHAT,
        record=_turn_reservation(message),
        message_id=message.pk,
    )


def _turn_reservation(message: Message) -> UsageRecord | None:
    """The usage record of the reply's call under way: its latest (a continued reply has one per call)."""
    return UsageRecord.objects.filter(message_id=message.pk).order_by("-created_at", "-id").first()
