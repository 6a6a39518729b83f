"""A stored completion's messages and choices as the transcript template shows them: text, document
chips, image thumbnails, tool calls, and any other part as JSON. Its own module because it only shapes data."""

import json
import re
from typing import Any

from conversations.chat.attachments.parts import document_blocks_split


def json_pretty(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=False, default=str)


def _arguments(raw: Any) -> str:
    """Tool-call arguments are a JSON string; show them indented when they parse."""
    if isinstance(raw, str):
        try:
            return json_pretty(json.loads(raw))
        except ValueError:
            return raw
    return json_pretty(raw)


def _text(text: str) -> list[dict[str, str]]:
    """Text, its attached documents (delimited blocks at its start) shown apart as chips."""
    documents, rest = document_blocks_split(text)
    shown = [{"kind": "document", "name": name, "text": body} for name, body in documents]
    return shown + ([{"kind": "text", "text": rest}] if rest else [])


def _image(part: dict[str, Any]) -> dict[str, str] | None:
    """An image part to show as a thumbnail: a stored file of chatweb's, or an inline PNG, JPEG, WebP or GIF."""
    url = (part.get("image_url") or {}).get("url") if isinstance(part.get("image_url"), dict) else None
    if not isinstance(url, str):
        return None
    if re.fullmatch(r"/files/\d+", url) or re.match(r"data:image/(png|jpeg|webp|gif);base64,[A-Za-z0-9+/=]+\Z", url):
        return {
            "kind": "image",
            "url": url,
            "label": url if url.startswith("/") else f"inline image, {len(url):,} characters",
        }
    return None


def _content(content: Any) -> list[dict[str, str]]:
    """Text, or content parts (text shown as text, documents as chips, images as thumbnails, other parts as
    their JSON)."""
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return _text(content)
    if isinstance(content, list):
        shown = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in ("text", "input_text") and isinstance(part.get("text"), str):
                shown += _text(part["text"])
            elif kind == "image_url" and (image := _image(part)) is not None:
                shown.append(image)
            elif kind == "refusal":
                shown.append({"kind": "refusal", "text": str(part.get("refusal", ""))})
            else:
                label = part.get("type", "part") if isinstance(part, dict) else "part"
                shown.append({"kind": "json", "label": str(label), "text": json_pretty(part)})
        return shown
    return [{"kind": "json", "label": "content", "text": json_pretty(content)}]


def _tool_calls(message: dict[str, Any]) -> list[dict[str, str]]:
    calls = []
    for call in message.get("tool_calls") or []:
        function = (call or {}).get("function") or {}
        calls.append(
            {
                "id": str(call.get("id") or ""),
                "name": str(function.get("name") or call.get("type") or "?"),
                "arguments": _arguments(function.get("arguments", "")),
            }
        )
    if isinstance(message.get("function_call"), dict):
        function = message["function_call"]
        calls.append(
            {"id": "", "name": str(function.get("name") or "?"), "arguments": _arguments(function.get("arguments", ""))}
        )
    return calls


def transcript_message(message: Any) -> dict[str, Any]:
    if not isinstance(message, dict):
        return {"role": "?", "content": [{"kind": "json", "label": "message", "text": json_pretty(message)}]}
    return {
        "role": str(message.get("role", "?")),
        "name": str(message.get("name") or ""),
        "tool_call_id": str(message.get("tool_call_id") or ""),
        "content": _content(message.get("content")),
        "refusal": str(message.get("refusal") or ""),
        "tool_calls": _tool_calls(message),
    }
