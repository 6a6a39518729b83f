"""Attachments: images for vision models and documents given as context.

A file is uploaded over HTTP before its message is sent; its type is sniffed from its
content (never its name), images are re-encoded (EXIF orientation applied, metadata
dropped, downscaled to ``IMAGE_MAX_SIDE``), and a document's text is extracted once and
kept on the row. Anything that cannot be used is refused with a sentence saying why,
and nothing of it is stored. Sending a message claims its uploads; the model is then
given each document as a delimited block and each image as an ``image_url`` part.

In what is kept (the request of a stored chat turn) an image is a reference to its
stored file (``/files/<id>``); only the request sent to the provider carries it inline,
as a base64 data URL (``attachments_inline``).
"""

from __future__ import annotations

import base64
import io
import math
import re
import unicodedata
import warnings
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Sum
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils import timezone

from ..ids import row_id
from ..models import Attachment, ChatModel, Message
from .tokens import messages_tokens_guess, tokens_count

ACCEPTED = "PNG, JPEG, WebP or GIF images, PDFs, and text files (Markdown, code, CSV, JSON)"
IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
IMAGE_EXTENSIONS = {"png", "jpg", "jpeg", "webp", "gif", "svg", "bmp", "ico", "heic", "avif", "tif", "tiff"}
# Uploads never sent with a message are removed after this long (at the user's next upload).
UNSENT_KEEP = timedelta(days=1)
DOCUMENT_BLOCK = re.compile(r'<document name="([^"\n]*)">\n(.*?)\n</document>', re.S)


def attachment_limits() -> dict[str, Any]:
    """The limits, as the composer shows them."""
    limits = settings.ATTACHMENTS
    return {
        "max_files": limits["MAX_FILES"],
        "max_file": filesizeformat(limits["MAX_FILE_BYTES"]),
        "user_max": filesizeformat(limits["USER_MAX_BYTES"]),
        "image_side": limits["IMAGE_MAX_SIDE"],
        "accepted": ACCEPTED,
    }


def filename_check(name: str) -> str:
    """The name to show for an upload; a name with a path in it or control characters is refused."""
    name = unicodedata.normalize("NFC", name or "").strip()
    if not name or name in (".", ".."):
        raise ValidationError("A file needs a name.")
    if "/" in name or "\\" in name or any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in name):
        raise ValidationError(
            f"The file name “{_printable(name)}” contains a path separator or a control character. "
            "Rename the file and attach it again."
        )
    if len(name) > 200:
        stem, dot, extension = name.rpartition(".")
        name = (stem[: 190] + dot + extension[:9]) if dot and len(extension) < 10 else name[:200]
    return name


def _printable(name: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in name)[:100]


def attachment_upload(*, user: AbstractBaseUser, upload: UploadedFile, name: str | None = None) -> Attachment:
    """Check, process and store one upload for ``user``; ``ValidationError`` says why one is refused.

    ``name`` is the file's name as the browser had it (``upload.name`` is already stripped
    of any path by Django's parser). The file is processed before the transaction that
    checks the user's total and saves it; if saving the row fails, the file is removed.
    """
    limits = settings.ATTACHMENTS
    name = filename_check(name if name is not None else upload.name)
    if upload.size == 0:
        raise ValidationError(f"“{name}” is empty (0 bytes).")
    if upload.size > limits["MAX_FILE_BYTES"]:
        raise ValidationError(
            f"“{name}” is {filesizeformat(upload.size)}; a file may be at most {filesizeformat(limits['MAX_FILE_BYTES'])}."
        )
    processed = _processed(name, upload.read())
    content = processed.pop("content")
    with transaction.atomic():
        _unsent_purge(user=user)
        kept = Attachment.objects.filter(user=user).aggregate(total=Sum("size"))["total"] or 0
        if kept + len(content) > limits["USER_MAX_BYTES"]:
            raise ValidationError(
                f"Your files take {filesizeformat(kept)} and “{name}” is {filesizeformat(len(content))}: "
                f"together more than the {filesizeformat(limits['USER_MAX_BYTES'])} you may keep. "
                "Delete conversations with files you no longer need."
            )
        attachment = Attachment(user=user, name=name, **processed)
        attachment.file.save(attachment.extension, ContentFile(content), save=False)
        try:
            attachment.save()
        except BaseException:
            attachment.file.delete(save=False)
            raise
    return attachment


def _processed(name: str, data: bytes) -> dict[str, Any]:
    """What an upload is and what is kept of it: kind, type, the bytes to store, size, dimensions, text."""
    sniffed = _sniff(data)
    claims_image = name.rpartition(".")[2].lower() in IMAGE_EXTENSIONS if "." in name else False
    if sniffed in IMAGE_TYPES.values():
        return _image(name, data)
    if sniffed == "svg" or (claims_image and name.lower().endswith(".svg")):
        raise ValidationError(f"“{name}” is an SVG image. SVGs can carry scripts and are not accepted: attach it as a PNG.")
    if claims_image:
        raise ValidationError(
            f"“{name}” is not an image: its content is {_describe(sniffed)}. Attach PNG, JPEG, WebP or GIF images."
        )
    if sniffed == "application/pdf":
        return _pdf(name, data)
    if sniffed == "text":
        return _text(name, data)
    raise ValidationError(f"“{name}” is {_describe(sniffed)}, which chatweb cannot read. It accepts {ACCEPTED}.")


def _sniff(data: bytes) -> str:
    """The type the bytes are, from their first bytes: an image type, a PDF, text, svg, html, or binary."""
    head = data[:4096]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if b"%PDF-" in head[:1024]:
        return "application/pdf"
    if b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "executable" if head.startswith((b"MZ", b"\x7fELF", b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe")) else "binary"
    lowered = head.lower()
    if b"<svg" in lowered:
        return "svg"
    if re.search(rb"^\s*(<!doctype html|<html|<head|<body|<script)", lowered):
        return "html"
    return "text"


def _describe(sniffed: str) -> str:
    return {
        "executable": "a program",
        "binary": "binary data",
        "html": "an HTML page",
        "svg": "an SVG image",
        "text": "text",
        "application/pdf": "a PDF",
    }.get(sniffed, "something else")


def _image(name: str, data: bytes) -> dict[str, Any]:
    """An image re-encoded: EXIF orientation applied, metadata gone, no side over ``IMAGE_MAX_SIDE``."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    limits = settings.ATTACHMENTS
    too_large = (
        f"“{name}” is too large an image to open: images may have at most "
        f"{limits['IMAGE_MAX_PIXELS'] / 1e6:g} megapixels."
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=list(IMAGE_TYPES))
            if image.width * image.height > limits["IMAGE_MAX_PIXELS"]:
                raise ValidationError(
                    f"“{name}” is {image.width:,}×{image.height:,} pixels; images may have at most "
                    f"{limits['IMAGE_MAX_PIXELS'] / 1e6:g} megapixels."
                )
            source_format = image.format
            image.seek(0)  # an animated GIF: its first frame
            image.load()
            image = ImageOps.exif_transpose(image)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ValidationError(too_large) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
            raise ValidationError(f"“{name}” could not be read as an image: it may be damaged.") from None
    side = limits["IMAGE_MAX_SIDE"]
    if max(image.size) > side:
        image.thumbnail((side, side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    if source_format == "JPEG":
        image.convert("RGB").save(out, "JPEG", quality=90, optimize=True)
        content_type = "image/jpeg"
    elif source_format == "WEBP":
        image.save(out, "WEBP", quality=90)
        content_type = "image/webp"
    else:  # PNG, and a GIF's first frame (vision models take still GIFs; PNG keeps it exact)
        if image.mode not in ("RGB", "RGBA", "L", "LA"):
            image = image.convert("RGBA")
        image.save(out, "PNG", optimize=True)
        content_type = "image/png"
    content = out.getvalue()
    return {
        "kind": Attachment.Kind.IMAGE,
        "content_type": content_type,
        "content": content,
        "size": len(content),
        "width": image.width,
        "height": image.height,
        "tokens": image_tokens_estimate(width=image.width, height=image.height),
    }


def _pdf(name: str, data: bytes) -> dict[str, Any]:
    """A PDF's text, page after page; an encrypted, damaged or textless PDF is refused."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ValidationError(f"“{name}” is protected by a password. Remove the password and attach it again.")
        text = "\n\n".join((page.extract_text() or "").strip() for page in reader.pages).strip()
    except ValidationError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError, RecursionError):
        raise ValidationError(f"“{name}” could not be read as a PDF: it may be damaged.") from None
    if not text:
        raise ValidationError(
            f"“{name}” has no text to read: it may be scanned pages, and chatweb reads only the text of a PDF."
        )
    return _document(name, "application/pdf", data, text)


def _text(name: str, data: bytes) -> dict[str, Any]:
    """A text file decoded with its detected charset, kept as UTF-8."""
    from charset_normalizer import from_bytes

    try:
        text = data.decode("utf-8-sig")  # most text is UTF-8: no guessing needed
    except UnicodeDecodeError:
        matches = list(from_bytes(data))
        if not matches:
            raise ValidationError(f"“{name}” is binary data, which chatweb cannot read. It accepts {ACCEPTED}.") from None
        best = matches[0]
        # Short Western European text reads about as well in several legacy code pages; Windows-1252,
        # by far the most common of them, wins a near tie.
        western = next((m for m in matches if m.encoding == "cp1252" and m.chaos <= best.chaos + 0.1), None)
        text = str(western or best).lstrip("\ufeff")
    if not text.strip():
        raise ValidationError(f"“{name}” has no text in it.")
    return _document(name, "text/plain", text.encode(), text)


def _document(name: str, content_type: str, content: bytes, text: str) -> dict[str, Any]:
    limit = settings.ATTACHMENTS["MAX_TEXT_CHARS"]
    if len(text) > limit:
        raise ValidationError(f"“{name}” has {len(text):,} characters of text; a document may have at most {limit:,}.")
    text = text.replace("\x00", "")
    return {
        "kind": Attachment.Kind.DOCUMENT,
        "content_type": content_type,
        "content": content,
        "size": len(content),
        "text": text,
        "tokens": tokens_count(document_block(name=name, text=text)),
    }


def image_tokens_estimate(*, width: int, height: int, detail: str = "auto") -> int:
    """Input tokens of an image by OpenAI's published tile rule: fit within 2048×2048, then the short
    side to 768, then 170 per 512-px tile plus 85 (``low`` detail: 85)."""
    if detail == "low":
        return 85
    if width <= 0 or height <= 0:
        return 85
    scale = min(1.0, 2048 / max(width, height))
    width, height = width * scale, height * scale
    scale = min(1.0, 768 / min(width, height))
    width, height = width * scale, height * scale
    return 170 * math.ceil(width / 512) * math.ceil(height / 512) + 85


def _unsent_purge(*, user: AbstractBaseUser) -> None:
    """Remove the user's uploads that were never sent with a message and are older than a day."""
    stale = Attachment.objects.filter(user=user, message__isnull=True, created_at__lt=timezone.now() - UNSENT_KEEP)
    attachments_delete(attachments=stale)


def attachments_delete(*, attachments: Iterable[Attachment]) -> None:
    """Delete the rows now and their files once the transaction commits (a rollback keeps both)."""
    rows = list(attachments)
    names = [a.file.name for a in rows]
    Attachment.objects.filter(pk__in=[a.pk for a in rows]).delete()
    files_delete_on_commit(names=names)


def files_delete_on_commit(*, names: list[str]) -> None:
    """Remove stored files after the rows that named them are gone for good."""
    if not names:
        return
    from django.core.files.storage import storages

    def remove() -> None:
        for name in names:
            storages["attachments"].delete(name)

    transaction.on_commit(remove)


def attachment_discard(*, user: AbstractBaseUser, attachment_id: int) -> None:
    """Remove an upload the user took back out of the composer (one not sent yet)."""
    with transaction.atomic():
        found = Attachment.objects.filter(user=user, pk=attachment_id, message__isnull=True)
        if not found.exists():
            raise Attachment.DoesNotExist
        attachments_delete(attachments=found)


def attachments_unsent(*, user: AbstractBaseUser, ids: Iterable[Any]) -> list[Attachment]:
    """The user's uploads named by ``ids`` not sent yet, in the given order; a bad or foreign id is refused."""
    wanted: list[int] = []
    for raw in ids:
        attachment_id = row_id(str(raw))
        if attachment_id is None:
            raise ValidationError("An attached file was not found. Remove it and attach it again.")
        if attachment_id not in wanted:
            wanted.append(attachment_id)
    limit = settings.ATTACHMENTS["MAX_FILES"]
    if len(wanted) > limit:
        raise ValidationError(f"A message may have at most {limit} files; this one has {len(wanted)}.")
    if not wanted:
        return []
    found = {
        a.pk: a
        for a in Attachment.objects.select_for_update().filter(user=user, message__isnull=True, pk__in=wanted)
    }
    if len(found) != len(wanted):
        raise ValidationError(
            "An attached file was not found: it was removed, or sent already. Remove it and attach it again."
        )
    return [found[pk] for pk in wanted]


def attachments_check_model(*, attachments: list[Attachment], model: ChatModel) -> None:
    """Refuse images for a model that does not read them, before anything is sent."""
    images = [a.name for a in attachments if a.is_image]
    if images and not model.accepts_images:
        raise ValidationError(
            f"{model.label} does not accept images ({', '.join(images)}). "
            "Pick a model that does, or remove the image."
        )


def attachments_claim(*, attachments: list[Attachment], message: Message) -> None:
    """The uploads now belong to ``message`` (locked by ``attachments_unsent`` in this transaction)."""
    if attachments:
        Attachment.objects.filter(pk__in=[a.pk for a in attachments]).update(message=message)


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
        raise ValidationError(
            f"This message does not fit {model.label}'s context: {names}; with the conversation and room "
            f"for the reply ({reply:,}) that is about {total:,} tokens, and the model reads at most "
            f"{model.context_tokens:,}. Remove a document or attach a shorter one."
        )


# --- What the model is given ------------------------------------------------------------------


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


def _file_id(url: Any) -> int | None:
    """The attachment an ``image_url`` names when it is one of chatweb's own file references."""
    match = re.fullmatch(r"/files/(\d+)", url) if isinstance(url, str) else None
    return row_id(match.group(1)) if match else None


def attachments_inline(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages as the provider is sent them: each reference to a stored image as a base64 data URL."""
    ids = [
        file_id
        for message in messages
        if isinstance(message.get("content"), list)
        for part in message["content"]
        if part.get("type") == "image_url" and (file_id := _file_id(part["image_url"].get("url"))) is not None
    ]
    if not ids:
        return messages
    found = {a.pk: a for a in Attachment.objects.filter(pk__in=ids)}

    def inline(part: dict[str, Any]) -> dict[str, Any]:
        if part.get("type") != "image_url":
            return part
        attachment = found.get(_file_id(part["image_url"].get("url")) or 0)
        if attachment is None:
            return part
        with attachment.file.open("rb") as f:
            encoded = base64.b64encode(f.read()).decode()
        return {**part, "image_url": {**part["image_url"], "url": f"data:{attachment.content_type};base64,{encoded}"}}

    return [
        {**m, "content": [inline(p) for p in m["content"]]} if isinstance(m.get("content"), list) else m
        for m in messages
    ]


def image_part_tokens(part: dict[str, Any]) -> int:
    """An ``image_url`` part's input tokens by the tile rule: its size read from a data URL's header or
    from the stored file it names; an image of unknown size counts as 1024×1024."""
    image_url = part.get("image_url") if isinstance(part.get("image_url"), dict) else {}
    detail = image_url.get("detail") or "auto"
    url = image_url.get("url")
    size = None
    if (file_id := _file_id(url)) is not None:
        size = Attachment.objects.filter(pk=file_id).values_list("width", "height").first()
    elif isinstance(url, str) and url.startswith("data:image/"):
        size = _data_url_size(url)
    width, height = size if size and size[0] and size[1] else (1024, 1024)
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
