"""What steers a chat: its system prompt and parameters, presets to start chats from, a user's defaults.

Parameters are validated here, with the field named in the error, and turned into what
each turn sends the provider (``chat_request_parameters``), which the stored completion
records as its request.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q, QuerySet

from conversations.accounts.selectors import chat_model_list
from conversations.core.errors import InvalidInput, NotFound
from conversations.core.ids import row_id
from conversations.models import (
    ChatModel,
    ChatSettings,
    Conversation,
    Preset,
    ReasoningEffort,
    UserPreferences,
)

SYSTEM_PROMPT_MAX_CHARS = 20_000
SETTINGS_FIELDS = ("system_prompt", "temperature", "top_p", "max_tokens", "reasoning_effort")
LABELS = {
    "system_prompt": "System prompt",
    "temperature": "Temperature",
    "top_p": "Top p",
    "max_tokens": "Max tokens",
    "reasoning_effort": "Reasoning effort",
}


def chat_settings_clean(*, data: Mapping[str, Any], model: ChatModel | None) -> dict[str, Any]:
    """The settings typed into a form (strings; blank leaves a parameter to the provider), checked.

    Raises ``InvalidInput`` naming the field: out of range, not a number, over the
    model's own length limit, or a reasoning effort for a model that does not reason.
    """
    system_prompt = _prompt(data.get("system_prompt"))
    if len(system_prompt) > SYSTEM_PROMPT_MAX_CHARS:
        raise InvalidInput(
            f"System prompt: {len(system_prompt):,} characters; the limit is {SYSTEM_PROMPT_MAX_CHARS:,}.",
            param="system_prompt",
        )
    cleaned: dict[str, Any] = {
        "system_prompt": system_prompt,
        "temperature": _number(data, "temperature", 0, 2),
        "top_p": _number(data, "top_p", 0, 1),
        "max_tokens": _max_tokens(data, model),
        "reasoning_effort": str(data.get("reasoning_effort") or "").strip(),
    }
    effort = cleaned["reasoning_effort"]
    if effort and effort not in ReasoningEffort.values:
        raise InvalidInput("Reasoning effort: choose low, medium or high.", param="reasoning_effort")
    if effort and model is not None and not model.reasoning:
        raise InvalidInput(
            f"Reasoning effort: {model.label} is not a reasoning model; leave it blank.", param="reasoning_effort"
        )
    return cleaned


def _prompt(raw: Any) -> str:
    """A prompt as typed, trimmed, with a form's CRLF line ends made the newlines a model is sent."""
    return str(raw or "").replace("\r\n", "\n").strip()


def _number(data: Mapping[str, Any], field: str, low: float, high: float) -> float | None:
    raw = str(data.get(field) or "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not low <= value <= high:
        raise InvalidInput(f"{LABELS[field]}: a number from {low:g} to {high:g}, not “{raw[:20]}”.", param=field)
    return value


def _max_tokens(data: Mapping[str, Any], model: ChatModel | None) -> int | None:
    raw = str(data.get("max_tokens") or "").strip()
    if not raw:
        return None
    limit = model.max_tokens if model is not None else None
    bounds = f"a whole number from 1 to {limit:,}" if limit else "a whole number from 1"
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1 or (limit and value > limit):
        reason = f" (the limit of {model.label})" if model is not None and limit and value > limit else ""
        raise InvalidInput(f"Max tokens: {bounds}{reason}, not “{raw[:20]}”.", param="max_tokens")
    return value


def chat_request_parameters(*, settings: ChatSettings, model: ChatModel | None) -> dict[str, Any]:
    """What a turn sends the provider besides its messages: the chat's parameters, those left blank omitted.

    ``max_tokens`` is the chat's, never over the model's own limit (the chat may have
    switched to a model with a lower one), else the model's; ``reasoning_effort`` goes
    only to a reasoning model.
    """
    parameters: dict[str, Any] = {}
    limit = model.max_tokens if model is not None else None
    max_tokens = min(filter(None, (settings.max_tokens, limit)), default=None)
    if max_tokens:
        parameters["max_tokens"] = max_tokens
    if settings.temperature is not None:
        parameters["temperature"] = settings.temperature
    if settings.top_p is not None:
        parameters["top_p"] = settings.top_p
    if settings.reasoning_effort and model is not None and model.reasoning:
        parameters["reasoning_effort"] = settings.reasoning_effort
    return parameters


def chat_system_messages(*, settings: ChatSettings) -> list[dict[str, str]]:
    """The system message a turn starts with, if the chat has a prompt."""
    return [{"role": "system", "content": settings.system_prompt}] if settings.system_prompt else []


def conversation_settings_set(*, conversation: Conversation, data: Mapping[str, Any]) -> Conversation:
    """Change a chat's prompt and parameters; they apply from its next turn on."""
    cleaned = chat_settings_clean(data=data, model=conversation.model)
    for field, value in cleaned.items():
        setattr(conversation, field, value)
    conversation.save(update_fields=[*SETTINGS_FIELDS, "updated_at"])
    return conversation


# --- Presets -------------------------------------------------------------------------------------


def preset_list(*, user: User) -> QuerySet[Preset]:
    """The presets a user may start from: their own and the site-wide ones."""
    return Preset.objects.filter(Q(user=user) | Q(user__isnull=True)).select_related("model")


def preset_get(*, user: User, preset_id: Any, own: bool = False) -> Preset:
    """A preset the user may use (with ``own``, one they may change), or ``NotFound``."""
    presets = Preset.objects.filter(user=user) if own else preset_list(user=user)
    pk = row_id(str(preset_id))
    preset = presets.filter(pk=pk).first() if pk is not None else None
    if preset is None:
        raise NotFound("No such preset.")
    return preset


def preset_save(*, user: User, data: Mapping[str, Any], preset: Preset | None = None) -> Preset:
    """Create a preset of the user's own, or change ``preset`` (one of theirs), from a form's fields."""
    name = " ".join(str(data.get("name") or "").split())[:100]
    if not name:
        raise InvalidInput("Name: give the preset a name.", param="name")
    model = None
    model_name = str(data.get("model") or "")
    if model_name:
        model = chat_model_list(user=user).filter(name=model_name).first()
        if model is None:
            raise InvalidInput(f"Model: “{model_name[:100]}” is not available.", param="model")
    cleaned = chat_settings_clean(data=data, model=model)
    preset = preset or Preset(user=user)
    preset.name, preset.model = name, model
    for field, value in cleaned.items():
        setattr(preset, field, value)
    preset.save()
    return preset


def preset_delete(*, preset: Preset) -> None:
    preset.delete()


# --- A user's defaults ---------------------------------------------------------------------------


def preferences_get(*, user: User) -> UserPreferences:
    """The user's preferences, unsaved defaults if they never chose any."""
    return UserPreferences.objects.select_related("default_preset__model").filter(user=user).first() or (
        UserPreferences(user=user)
    )


@transaction.atomic
def preferences_chat_set(*, user: User, system_prompt: str, default_preset_id: Any) -> UserPreferences:
    """Keep the user's own system prompt for new chats and the preset new chats start from (blank: none)."""
    system_prompt = _prompt(system_prompt)
    if len(system_prompt) > SYSTEM_PROMPT_MAX_CHARS:
        raise InvalidInput(
            f"Your system prompt: {len(system_prompt):,} characters; the limit is {SYSTEM_PROMPT_MAX_CHARS:,}.",
            param="system_prompt",
        )
    preset = preset_get(user=user, preset_id=default_preset_id) if default_preset_id else None
    preferences, _ = UserPreferences.objects.update_or_create(
        user=user, defaults={"system_prompt": system_prompt, "default_preset": preset}
    )
    return preferences


def new_chat_settings(*, user: User, preset: Preset | None = None) -> tuple[Preset | None, dict[str, Any]]:
    """What a new chat starts with: ``preset``, else the user's default preset, and its settings.

    The user's own system prompt comes first in the chat's prompt, then the preset's.
    """
    preferences = preferences_get(user=user)
    preset = preset or preferences.default_preset
    values = {field: getattr(preset, field) if preset else None for field in SETTINGS_FIELDS}
    prompts = [preferences.system_prompt, preset.system_prompt if preset else ""]
    values["system_prompt"] = "\n\n".join(prompt for prompt in prompts if prompt)
    values["reasoning_effort"] = values["reasoning_effort"] or ""
    return preset, values
