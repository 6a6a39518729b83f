"""Counting tokens when a provider reports none (llama.cpp streams, dropped streams).

Uses the bundled SmolLM2 tokenizer (read from its GGUF file, no weights loaded) when
the local model is installed: exact for the local model, a close estimate for others.
Without it, about four characters make a token. Counts from here are marked estimated.
Images count by OpenAI's tile rule, their size read from a data URL's header or the stored file.
"""

from __future__ import annotations

import atexit
import base64
import functools
import io
import math
import re
import warnings
from typing import Any

from conversations.core.ids import row_id
from conversations.models import Attachment
from conversations.providers.localmodel import gguf_path


@functools.cache
def _tokenizer() -> Any | None:
    try:
        from llama_cpp import Llama  # optional: installed with the local model (make install-local)

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
    texts, images = [], 0
    for part in content:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "image_url":
            images += image_part_tokens(part)
        else:
            texts.append(str(part.get("text", "")))
    return " ".join(texts), images


def image_tokens_estimate(*, width: int, height: int, detail: str = "auto") -> int:
    """Input tokens of an image by OpenAI's published tile rule: fit within 2048×2048, then the short
    side to 768, then 170 per 512-px tile plus 85 (``low`` detail: 85)."""
    if detail == "low":
        return 85
    if width <= 0 or height <= 0:
        return 85
    scale = min(1.0, 2048 / max(width, height))
    fitted_width, fitted_height = width * scale, height * scale
    scale = min(1.0, 768 / min(fitted_width, fitted_height))
    fitted_width, fitted_height = fitted_width * scale, fitted_height * scale
    return 170 * math.ceil(fitted_width / 512) * math.ceil(fitted_height / 512) + 85


def file_reference_id(url: Any) -> int | None:
    """The attachment an ``image_url`` names when it is one of chatweb's own file references."""
    match = re.fullmatch(r"/files/(\d+)", url) if isinstance(url, str) else None
    return row_id(match.group(1)) if match else None


def image_part_tokens(part: dict[str, Any]) -> int:
    """An ``image_url`` part's input tokens by the tile rule: its size read from a data URL's header or
    from the stored file it names; an image of unknown size counts as 1024×1024."""
    given = part.get("image_url")
    image_url: dict[str, Any] = given if isinstance(given, dict) else {}
    detail = image_url.get("detail") or "auto"
    url = image_url.get("url")
    size: tuple[int | None, int | None] | None = None
    if (file_id := file_reference_id(url)) is not None:
        size = Attachment.objects.filter(pk=file_id).values_list("width", "height").first()
    elif isinstance(url, str) and url.startswith("data:image/"):
        size = _data_url_size(url)
    width, height = 1024, 1024
    if size is not None and size[0] and size[1]:
        width, height = size[0], size[1]
    return image_tokens_estimate(width=width, height=height, detail=detail)


def _data_url_size(url: str) -> tuple[int, int] | None:
    """An inline image's size from its first bytes (Pillow reads only the header)."""
    from PIL import Image

    try:
        head = base64.b64decode(url.partition(",")[2][:65536])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Image.open(io.BytesIO(head)).size
    except Exception:  # noqa: BLE001 - an unreadable image is counted at the default size
        return None
