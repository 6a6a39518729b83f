"""What the model is given of attachments: documents as delimited blocks, images as ``image_url`` parts referring to stored files, inlined as data URLs only in the request sent to the provider."""

from __future__ import annotations

import base64
import re
from typing import Any

from django.conf import settings
from django.urls import reverse

from conversations.core.errors import InvalidInput
from conversations.models import Attachment, ChatModel, Message
from conversations.providers.tokens import file_reference_id, messages_tokens_guess

DOCUMENT_BLOCK = re.compile(r'<document name="([^"\n]*)">\n(.*?)\n</document>', re.S)


def context_check(*, model: ChatModel, history: list[dict[str, Any]], attachments: list[Attachment]) -> None:
    """Refuse a message whose documents do not fit the model's context, with the numbers."""
    if not model.context_tokens:
        return
    documents = sum(a.tokens for a in attachments if not a.is_image)
    if not documents:
        return
    reply = model.max_tokens or settings.USAGE_RESERVE_OUTPUT_TOKENS
    total = messages_tokens_guess(history) + reply
    if total > model.context_tokens:
        names = ", ".join(f"{a.name} (about {a.tokens:,} tokens)" for a in attachments if not a.is_image)
        raise InvalidInput(
            f"This message does not fit {model.label}'s context: {names}; with the conversation and room "
            f"for the reply ({reply:,}) that is about {total:,} tokens, and the model reads at most "
            f"{model.context_tokens:,}. Remove a document or attach a shorter one."
        )


def document_block(*, name: str, text: str) -> str:
    """A document as the prompt carries it: delimited, with its name."""
    return f'<document name="{name.replace(chr(34), chr(39))}">\n{text}\n</document>'


def document_blocks_split(text: str) -> tuple[list[tuple[str, str]], str]:
    """The documents a prompt text starts with (name, text), and the rest: for showing a stored turn."""
    documents = []
    at = 0
    while match := DOCUMENT_BLOCK.match(text, at):
        documents.append((match.group(1), match.group(2)))
        at = match.end()
        while text.startswith("\n", at):
            at += 1
    return documents, text[at:]


def file_url(attachment_id: int) -> str:
    return reverse("attachment_file", args=[attachment_id])


def message_model_content(*, message: Message, images: bool) -> str | list[dict[str, Any]]:
    """What the model is given for a message: its documents as delimited blocks before the text, and its
    images as ``image_url`` parts referring to the stored files (``images``: the model reads them; else a
    line says an image was left out). ``message.attachments`` is best prefetched."""
    attachments = list(message.attachments.all()) if message.role == Message.Role.USER else []
    if not attachments:
        return message.content
    blocks = [document_block(name=a.name, text=a.text) for a in attachments if not a.is_image]
    if not images:
        blocks += [f"[Image “{a.name}” left out: this model does not read images.]" for a in attachments if a.is_image]
    text = "\n\n".join([*blocks, message.content] if message.content else blocks)
    pictures = [a for a in attachments if a.is_image] if images else []
    if not pictures:
        return text
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    return parts + [{"type": "image_url", "image_url": {"url": file_url(a.pk)}} for a in pictures]


def attachments_inline(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages as the provider is sent them: each reference to a stored image as a base64 data URL."""
    ids = [
        file_id
        for message in messages
        if isinstance(message.get("content"), list)
        for part in message["content"]
        if part.get("type") == "image_url" and (file_id := file_reference_id(part["image_url"].get("url"))) is not None
    ]
    if not ids:
        return messages
    found = {a.pk: a for a in Attachment.objects.filter(pk__in=ids)}

    def inline(part: dict[str, Any]) -> dict[str, Any]:
        if part.get("type") != "image_url":
            return part
        attachment = found.get(file_reference_id(part["image_url"].get("url")) or 0)
        if attachment is None:
            return part
        with attachment.file.open("rb") as f:
            encoded = base64.b64encode(f.read()).decode()
        return {**part, "image_url": {**part["image_url"], "url": f"data:{attachment.content_type};base64,{encoded}"}}

    return [
        {**m, "content": [inline(p) for p in m["content"]]} if isinstance(m.get("content"), list) else m
        for m in messages
    ]
