"""The chat page around whatever it shows: the sidebar, the composer, the conversation, rendered whole."""

from typing import Any

from django.contrib.messages import get_messages
from django.http import (
    HttpResponse,
)
from django.shortcuts import render

from conversations.accounts.selectors import (
    chat_model_default,
    chat_model_list,
)
from conversations.chat.attachments.upload import attachment_limits
from conversations.chat.selectors import (
    message_page,
)
from conversations.chat.settings import (
    new_chat_settings,
    preset_list,
)
from conversations.core.errors import InvalidInput
from conversations.core.requests import SignedInRequest
from conversations.ledger.totals import conversation_totals
from conversations.models import Attachment, Conversation, Message, Preset
from conversations.web.library import sidebar_context

TEMPLATE = "conversations/chat.html"


def page_render(
    request: SignedInRequest,
    *,
    conversation: Conversation | None = None,
    notice: str = "",
    draft: str = "",
    draft_attachments: list[Attachment] | None = None,
    status: int = 200,
    preset: Preset | None = None,
    typed_settings: dict[str, Any] | None = None,
    settings_error: InvalidInput | None = None,
) -> HttpResponse:
    messages, has_earlier = message_page(conversation=conversation) if conversation else ([], False)
    selected = conversation.model_id if conversation else None
    presets: list[Preset] = []
    chat_models = list(chat_model_list(user=request.user))
    if conversation is not None:
        settings_values: Any = conversation
    else:
        presets = list(preset_list(user=request.user))
        preset, settings_values = new_chat_settings(user=request.user, preset=preset)
        selected = preset.model_id if preset else None
    if selected is None:
        default = chat_model_default(user=request.user)
        selected = default.pk if default else None
    return render(
        request,
        TEMPLATE,
        {
            "conversation": conversation,
            "conversation_usage": conversation_totals(conversation=conversation) if conversation else None,
            **sidebar_context(user=request.user, conversation=conversation),
            "messages_flash": get_messages(request),
            "messages": messages,
            "has_earlier": has_earlier,
            "streaming_ids": [m.pk for m in messages if m.status == Message.Status.STREAMING],
            "chat_models": chat_models,
            "selected_model_id": selected,
            "notice": notice,
            "draft": draft,
            "chat_settings": typed_settings or settings_values,
            "settings_error": settings_error,
            "presets": presets,
            "preset": preset,
            "reasoning_models": any(model.reasoning for model in chat_models),
            "attachments": draft_attachments or [],
            "attachment_limits": attachment_limits(),
        },
        status=status,
    )
