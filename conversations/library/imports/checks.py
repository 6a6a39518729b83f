"""The check of an uploaded export before anything is imported: size, shape, a first pass counting its
entries, and its SHA-256. Its own module because it runs in the request, before any run exists."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import IO, Any

import ijson
from django.conf import settings

from conversations.core.errors import InvalidInput
from conversations.core.jsonstream import JsonStreamError, json_list_items
from conversations.library.imports.entries import entry_format


def import_file_check(*, upload: IO[bytes], size: int) -> tuple[str, int]:
    """The SHA-256 and entry count of an uploaded export; InvalidInput when it cannot be imported."""
    if size > settings.IMPORT_MAX_BYTES:
        raise InvalidInput(
            f"That file is {size / 2**20:,.1f} MB; the largest import is {settings.IMPORT_MAX_BYTES / 2**20:,.0f} MB. "
            "Split the export, or ask an admin to raise IMPORT_MAX_BYTES.",
            param="file",
        )
    if size == 0:
        raise InvalidInput("That file is empty.", param="file")
    digest = hashlib.sha256()
    for chunk in iter(lambda: upload.read(1 << 20), b""):
        digest.update(chunk)
    rewind(upload)
    first = upload.read(64).lstrip(b" \t\r\n")[:1]
    rewind(upload)
    if first != b"[":
        raise InvalidInput(
            "This is not a ChatGPT, chatweb or Open WebUI export: those are a JSON list of conversations "
            "(ChatGPT: the conversations.json inside its export zip).",
            param="file",
        )
    count = 0
    try:
        for entry in import_entries(upload):
            if count == 0 and entry_format(entry) is None:
                raise InvalidInput(
                    "This is not a ChatGPT, chatweb or Open WebUI export: its first entry is not a conversation "
                    "any of them writes.",
                    param="file",
                )
            count += 1
    except JsonStreamError as exc:
        raise InvalidInput(f"{exc} Nothing was imported.", param="file") from None
    except (ijson.JSONError, UnicodeDecodeError) as exc:
        raise InvalidInput(
            f"The file is not valid JSON, or it is cut short ({json_error(exc)}). Nothing was imported.",
            param="file",
        ) from None
    finally:
        rewind(upload)
    if count == 0:
        raise InvalidInput("The file holds no conversations.", param="file")
    return digest.hexdigest(), count


def import_entries(upload: IO[bytes]) -> Iterator[Any]:
    """The export's entries as they are read, nested at most as deep as any JSON input may be
    (``IMPORT_MAX_DEPTH``), with no text longer than ``IMPORT_MAX_STRING`` characters."""
    return json_list_items(upload, max_depth=settings.IMPORT_MAX_DEPTH, max_string=settings.IMPORT_MAX_STRING)


def rewind(upload: IO[bytes]) -> None:
    """Back to the start of the JSON: past a UTF-8 byte order mark, which editors on Windows write."""
    upload.seek(0)
    if upload.read(3) != b"\xef\xbb\xbf":
        upload.seek(0)


def json_error(exc: Exception) -> str:
    detail = exc.args[0] if exc.args else ""
    if isinstance(detail, bytes):
        detail = detail.decode("utf-8", "replace")
    text = str(detail).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]
