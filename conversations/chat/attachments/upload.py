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

import io
import re
import unicodedata
import warnings
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Sum
from django.template.defaultfilters import filesizeformat

from conversations.chat.attachments.lifecycle import unsent_purge
from conversations.chat.attachments.parts import document_block
from conversations.core.errors import InvalidInput
from conversations.models import Attachment
from conversations.providers.tokens import image_tokens_estimate, tokens_count

ACCEPTED = "PNG, JPEG, WebP or GIF images, PDFs, and text files (Markdown, code, CSV, JSON)"


IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}


IMAGE_EXTENSIONS = {"png", "jpg", "jpeg", "webp", "gif", "svg", "bmp", "ico", "heic", "avif", "tif", "tiff"}


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


def filename_check(name: str | None) -> str:
    """The name to show for an upload; a name with a path in it or control characters is refused."""
    name = unicodedata.normalize("NFC", name or "").strip()
    if not name or name in (".", ".."):
        raise InvalidInput("A file needs a name.")
    if "/" in name or "\\" in name or any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in name):
        raise InvalidInput(
            f"The file name “{_printable(name)}” contains a path separator or a control character. "
            "Rename the file and attach it again."
        )
    if len(name) > 200:
        stem, dot, extension = name.rpartition(".")
        name = (stem[:190] + dot + extension[:9]) if dot and len(extension) < 10 else name[:200]
    return name


def _printable(name: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in name)[:100]


def attachment_upload(*, user: User, upload: UploadedFile, name: str | None = None) -> Attachment:
    """Check, process and store one upload for ``user``; ``InvalidInput`` says why one is refused.

    ``name`` is the file's name as the browser had it (``upload.name`` is already stripped
    of any path by Django's parser). The file is processed before the transaction that
    checks the user's total and saves it; if saving the row fails, the file is removed.
    """
    limits = settings.ATTACHMENTS
    name = filename_check(name if name is not None else upload.name)
    size = upload.size or 0  # Django's upload handlers always know it; unknown would count as empty
    if size == 0:
        raise InvalidInput(f"“{name}” is empty (0 bytes).")
    if size > limits["MAX_FILE_BYTES"]:
        raise InvalidInput(
            f"“{name}” is {filesizeformat(size)}; a file may be at most {filesizeformat(limits['MAX_FILE_BYTES'])}."
        )
    processed = _processed(name, upload.read())
    content = processed.pop("content")
    with transaction.atomic():
        unsent_purge(user=user)
        kept = Attachment.objects.filter(user=user).aggregate(total=Sum("size"))["total"] or 0
        if kept + len(content) > limits["USER_MAX_BYTES"]:
            raise InvalidInput(
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
        raise InvalidInput(
            f"“{name}” is an SVG image. SVGs can carry scripts and are not accepted: attach it as a PNG."
        )
    if claims_image:
        raise InvalidInput(
            f"“{name}” is not an image: its content is {_describe(sniffed)}. Attach PNG, JPEG, WebP or GIF images."
        )
    if sniffed == "application/pdf":
        return _pdf(name, data)
    if sniffed == "text":
        return _text(name, data)
    raise InvalidInput(f"“{name}” is {_describe(sniffed)}, which chatweb cannot read. It accepts {ACCEPTED}.")


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
        return (
            "executable" if head.startswith((b"MZ", b"\x7fELF", b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe")) else "binary"
        )
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
            image: Image.Image = Image.open(io.BytesIO(data), formats=list(IMAGE_TYPES))
            if image.width * image.height > limits["IMAGE_MAX_PIXELS"]:
                raise InvalidInput(
                    f"“{name}” is {image.width:,}×{image.height:,} pixels; images may have at most "
                    f"{limits['IMAGE_MAX_PIXELS'] / 1e6:g} megapixels."
                )
            source_format = image.format
            image.seek(0)  # an animated GIF: its first frame
            image.load()
            image = ImageOps.exif_transpose(image)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise InvalidInput(too_large) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
            raise InvalidInput(f"“{name}” could not be read as an image: it may be damaged.") from None
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
            raise InvalidInput(f"“{name}” is protected by a password. Remove the password and attach it again.")
        text = "\n\n".join((page.extract_text() or "").strip() for page in reader.pages).strip()
    except InvalidInput:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError, RecursionError):
        raise InvalidInput(f"“{name}” could not be read as a PDF: it may be damaged.") from None
    if not text:
        raise InvalidInput(
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
            raise InvalidInput(f"“{name}” is binary data, which chatweb cannot read. It accepts {ACCEPTED}.") from None
        best = matches[0]
        # Short Western European text reads about as well in several legacy code pages; Windows-1252,
        # by far the most common of them, wins a near tie.
        western = next((m for m in matches if m.encoding == "cp1252" and m.chaos <= best.chaos + 0.1), None)
        text = str(western or best).lstrip("\ufeff")
    if not text.strip():
        raise InvalidInput(f"“{name}” has no text in it.")
    return _document(name, "text/plain", text.encode(), text)


def _document(name: str, content_type: str, content: bytes, text: str) -> dict[str, Any]:
    limit = settings.ATTACHMENTS["MAX_TEXT_CHARS"]
    if len(text) > limit:
        raise InvalidInput(f"“{name}” has {len(text):,} characters of text; a document may have at most {limit:,}.")
    text = text.replace("\x00", "")
    return {
        "kind": Attachment.Kind.DOCUMENT,
        "content_type": content_type,
        "content": content,
        "size": len(content),
        "text": text,
        "tokens": tokens_count(document_block(name=name, text=text)),
    }
