"""Providers and models bootstrapped from the environment (then managed in the admin)."""

from __future__ import annotations

import asyncio
import re

from django.conf import settings
from django.db import transaction

from conversations.models import ChatModel, Provider
from conversations.providers.completions import models_list

LOCAL_PROVIDER = "Local model (llama.cpp)"
LOCAL_MODEL_NAME = "smollm2-135m"
LOCAL_MODEL_LABEL = "SmolLM2 135M (local)"
# A model this small can ramble until its context is full (minutes on a CPU); this is a long answer.
LOCAL_MODEL_MAX_TOKENS = 1024
OPENAI_PROVIDER = "OpenAI"

# Ids that OpenAI-compatible providers list but that do not do chat completions.
NOT_CHAT = re.compile(
    r"embed|whisper|tts|dall-e|moderation|davinci|babbage|transcribe|image|realtime|search|sora|audio",
    re.IGNORECASE,
)


def local_model_base_url() -> str:
    return f"http://{settings.LOCAL_MODEL_HOST}:{settings.LOCAL_MODEL_PORT}/v1"


def base_url_is_local(base_url: str) -> bool:
    """Whether ``base_url`` is the bundled model's, wherever the environment puts it."""
    return base_url.rstrip("/") == local_model_base_url()


def providers_sync() -> list[str]:
    """Create or update the providers the environment describes; returns what was done."""
    done = [_local_sync()]
    try:
        if settings.OPENAI_API_KEY:
            done.append(_openai_sync())
    finally:
        _default_ensure()
    return done


@transaction.atomic
def _local_sync() -> str:
    provider, _ = Provider.objects.update_or_create(
        name=LOCAL_PROVIDER,
        defaults={"base_url": local_model_base_url(), "enabled": settings.LOCAL_MODEL},
    )
    if not settings.LOCAL_MODEL:
        return "Local model turned off (LOCAL_MODEL=0)."
    ChatModel.objects.get_or_create(
        name=LOCAL_MODEL_NAME,
        defaults={
            "display_name": LOCAL_MODEL_LABEL,
            "provider": provider,
            "upstream_model": LOCAL_MODEL_NAME,
            "position": 0,
            "max_tokens": LOCAL_MODEL_MAX_TOKENS,
        },
    )
    return f"Local model at {provider.base_url}."


def _openai_sync() -> str:
    provider, _ = Provider.objects.update_or_create(
        name=OPENAI_PROVIDER,
        defaults={"base_url": settings.OPENAI_BASE_URL, "api_key": settings.OPENAI_API_KEY, "enabled": True},
    )
    ids = asyncio.run(models_list(base_url=provider.base_url, api_key=provider.api_key))
    chat_ids = [model_id for model_id in ids if not NOT_CHAT.search(model_id)]
    existing = set(ChatModel.objects.filter(name__in=chat_ids).values_list("name", flat=True))
    ChatModel.objects.bulk_create(
        ChatModel(name=model_id, provider=provider, upstream_model=model_id)
        for model_id in chat_ids
        if model_id not in existing
    )
    return (
        f"{OPENAI_PROVIDER} at {provider.base_url}: {len(chat_ids)} chat models, {len(chat_ids) - len(existing)} new."
    )


def _default_ensure() -> None:
    enabled = ChatModel.objects.filter(enabled=True, provider__enabled=True)
    if not enabled.filter(is_default=True).exists() and (first := enabled.first()):
        ChatModel.objects.filter(is_default=True).update(is_default=False)
        ChatModel.objects.filter(pk=first.pk).update(is_default=True)
