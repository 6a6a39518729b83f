"""Counting tokens when a provider reports none (llama.cpp streams, dropped streams).

Uses the bundled SmolLM2 tokenizer (read from its GGUF file, no weights loaded) when
the local model is installed: exact for the local model, a close estimate for others.
Without it, about four characters make a token. Counts from here are marked estimated.
"""

from __future__ import annotations

import atexit
import functools
import math
from typing import Any


@functools.cache
def _tokenizer() -> Any | None:
    try:
        from llama_cpp import Llama

        from ..localmodel import gguf_path

        tokenizer = Llama(model_path=str(gguf_path()), vocab_only=True, verbose=False)
    except (ImportError, FileNotFoundError, ValueError, RuntimeError):
        return None
    atexit.register(tokenizer.close)  # before interpreter shutdown tears down what its finaliser needs
    return tokenizer


def tokens_count(text: str) -> int:
    if not text:
        return 0
    tokenizer = _tokenizer()
    if tokenizer is None:
        return math.ceil(len(text) / 4)
    return len(tokenizer.tokenize(text.encode(), add_bos=False, special=False))


def messages_tokens_count(messages: list[dict[str, Any]]) -> int:
    """Prompt tokens of a chat: each message's text plus a few tokens of chat-template framing, and each
    image by OpenAI's tile rule."""
    total = 0
    for message in messages:
        text, images = _text_and_images(message.get("content"))
        total += tokens_count(text) + images + 4
    return total


def messages_tokens_guess(messages: list[dict[str, Any]]) -> int:
    """A quick upper-end guess (a token per 3 characters, images by the tile rule) for reserving usage
    before a call; the reservation is settled to real counts afterwards, so speed matters more than
    accuracy here."""
    total = 0
    for message in messages:
        text, images = _text_and_images(message.get("content"))
        total += math.ceil(len(text) / 3) + images + 4
    return total


def _text_and_images(content: Any) -> tuple[str, int]:
    """A message content's text, and its images' tokens."""
    if not isinstance(content, list):
        return str(content or ""), 0
    from .attachments import image_part_tokens

    texts, images = [], 0
    for part in content:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "image_url":
            images += image_part_tokens(part)
        else:
            texts.append(str(part.get("text", "")))
    return " ".join(texts), images
