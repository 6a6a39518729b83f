"""One prompt per turn: what the model is sent for a reply, built once for its reservation and its call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conversations.chat.attachments.parts import message_model_content
from conversations.chat.selectors import message_path_ids
from conversations.chat.settings import chat_request_parameters, chat_system_messages
from conversations.ledger.metering.reserve import metering_reserve_turn
from conversations.models import Message


@dataclass(frozen=True)
class Prompt:
    """The messages and parameters a reply is generated from.

    Images are references to their stored files (``/files/<id>``), as the stored completion keeps them;
    ``attachments_inline`` makes them data URLs for the provider.
    """

    messages: list[dict[str, Any]]
    parameters: dict[str, Any]

    @property
    def max_tokens(self) -> int | None:
        return self.parameters.get("max_tokens")


def prompt_reserve(*, reply: Message, prompt: Prompt) -> None:
    """Reserve the worst case of ``reply``'s call for ``prompt`` against its user's budget and rate limits, or
    ``QuotaExceeded``. ``reply.conversation`` comes with its user and its model's provider."""
    conversation = reply.conversation
    assert conversation.model is not None
    metering_reserve_turn(
        user=conversation.user,
        model=conversation.model,
        reply=reply,
        history=prompt.messages,
        max_output_tokens=prompt.max_tokens,
    )


def prompt_build(*, reply: Message, prefix: str = "") -> Prompt:
    """What produces ``reply``: the chat's system prompt, then the path from the first message down to the one
    ``reply`` answers, with its attachments; continuing it, its text so far (``prefix``) ends them, as the
    assistant's answer to go on with. ``reply.conversation`` comes with its model."""
    conversation = reply.conversation
    model = conversation.model
    images = model is not None and model.accepts_images
    path = (
        Message.objects.filter(pk__in=message_path_ids(conversation=conversation, leaf_id=reply.parent_id))
        .order_by("created_at", "id")
        .prefetch_related("attachments")
    )
    messages: list[dict[str, Any]] = [
        *chat_system_messages(settings=conversation),
        *(
            {"role": m.role, "content": message_model_content(message=m, images=images)}
            for m in path
            if m.content or m.attachments.all()  # an empty message says nothing (its files come prefetched)
        ),
    ]
    if prefix:
        messages.append({"role": "assistant", "content": prefix})
    return Prompt(messages=messages, parameters=chat_request_parameters(settings=conversation, model=model))
