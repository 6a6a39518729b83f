"""Attachments: uploads over HTTP, what is kept of them, who may read them, and what the model is sent."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import AsyncClient, Client
from PIL import Image

from conversations.chat.turns import message_send
from conversations.library.sharing import share_create, share_revoke
from conversations.models import Attachment, Conversation, Message, StoredCompletion, UsageRecord
from conversations.providers.tokens import image_tokens_estimate
from tests.conftest import wait_for_status
from tests.upstream import Reply

pytestmark = pytest.mark.django_db(transaction=True)


# --- Files made here ----------------------------------------------------------------------


def png(width: int = 64, height: int = 32, color: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


def jpeg_rotated(width: int, height: int) -> bytes:
    """A JPEG whose EXIF says: rotate 90° clockwise to show (orientation 6), with a camera make in it."""
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "SecretCam"
    out = io.BytesIO()
    Image.new("RGB", (width, height), "blue").save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


def pdf(text: str | None, password: str | None = None) -> bytes:
    """A one-page PDF drawn by reportlab: with ``text`` on it, or only a rectangle (no text at all)."""
    from reportlab.lib import pdfencrypt
    from reportlab.pdfgen import canvas

    out = io.BytesIO()
    encrypt = pdfencrypt.StandardEncryption(password) if password else None
    page = canvas.Canvas(out, encrypt=encrypt)
    if text:
        page.drawString(72, 720, text)
    else:
        page.rect(72, 600, 200, 100, fill=1)
    page.showPage()
    page.save()
    return out.getvalue()


def signed_in(user: Any, *, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user, backend="conversations.accounts.auth.PasswordBackend")
    return client


def upload(client: Client, name: str, data: bytes, *, content_type: str = "application/octet-stream") -> Any:
    return client.post("/files/", {"file": SimpleUploadedFile("upload", data, content_type), "name": name})


@pytest.fixture(autouse=True)
def storage_dir(settings: Any, tmp_path: Path) -> Path:
    """Attachments of each test in a folder of their own, to see what was stored."""
    settings.STORAGES = {
        **settings.STORAGES,
        "attachments": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path)},
        },
    }
    return tmp_path


def stored_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


# --- Uploading ------------------------------------------------------------------------------


def test_an_image_is_kept_upright_downscaled_and_without_its_metadata(user, settings, storage_dir):
    settings.ATTACHMENTS = {**settings.ATTACHMENTS, "IMAGE_MAX_SIDE": 512}
    response = upload(signed_in(user), "photo.jpg", jpeg_rotated(1200, 600))

    assert response.status_code == 200
    attachment = Attachment.objects.get()
    assert (attachment.kind, attachment.content_type) == ("image", "image/jpeg")
    assert (attachment.width, attachment.height) == (256, 512)  # turned upright, long side 512
    assert f'data-attachment-id="{attachment.pk}"' in response.content.decode()
    assert f'name="attachments" value="{attachment.pk}"' in response.content.decode()
    kept = Image.open(storage_dir / attachment.file.name)
    assert kept.size == (256, 512)
    assert not kept.getexif()  # no orientation, no camera make: nothing of the original's metadata
    assert "photo" not in attachment.file.name  # stored by a random name, under its user
    assert attachment.file.name.startswith(f"{user.pk}/")


def test_upload_needs_the_csrf_token_and_a_signed_in_user(user, client, storage_dir):
    assert upload(signed_in(user, csrf=True), "a.png", png()).status_code == 403
    assert upload(client, "a.png", png()).status_code == 302  # to the sign-in page
    assert not Attachment.objects.exists() and not stored_files(storage_dir)


def test_text_is_decoded_from_its_charset_and_kept_as_utf8(user):
    french = "nom;ville;remarque\nRené;Genève;très élégant, déjà réservé\nZoé;Orléans;à côté de l'hôtel\n" * 3
    latin1 = french.encode("cp1252")
    response = upload(signed_in(user), "people.csv", latin1)

    assert response.status_code == 200, response.content
    attachment = Attachment.objects.get()
    assert attachment.kind == "document" and attachment.content_type == "text/plain"
    assert "René;Genève" in attachment.text
    assert attachment.file.read().decode() == attachment.text
    assert attachment.tokens > 0


def test_a_script_is_text_not_a_program(user):
    assert upload(signed_in(user), "deploy.sh", b"#!/bin/sh\nset -e\nmake test\n").status_code == 200
    assert Attachment.objects.get().text == "#!/bin/sh\nset -e\nmake test\n"


def test_a_pdfs_text_is_extracted(user):
    response = upload(signed_in(user), "report.pdf", pdf("Quarterly revenue grew by 42 percent."))

    assert response.status_code == 200
    attachment = Attachment.objects.get()
    assert attachment.content_type == "application/pdf"
    assert "Quarterly revenue grew by 42 percent." in attachment.text


def bomb() -> bytes:
    """A PNG of a few kilobytes that decodes to 400 megapixels."""
    out = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(out, "PNG")
    return out.getvalue()


BAD = {
    "a program renamed as an image": (
        "cat.png",
        b"MZ\x90\x00\x03" + bytes(2000),
        "is not an image: its content is a program",
    ),
    "an HTML page posing as an image": (
        "cat.png",
        b"<!DOCTYPE html><html><script>alert(1)</script></html>",
        "is not an image: its content is an HTML page",
    ),
    "an SVG with a script": (
        "logo.svg",
        b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        "SVGs can carry scripts",
    ),
    "an SVG named as text": (
        "logo.txt",
        b'<?xml version="1.0"?><svg onload="alert(1)"></svg>',
        "SVGs can carry scripts",
    ),
    "a PDF with no text": ("scan.pdf", None, "has no text to read"),
    "an encrypted PDF": ("secret.pdf", None, "protected by a password"),
    "a corrupt PDF": (
        "broken.pdf",
        b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\nthis is not a pdf",
        "could not be read as a PDF",
    ),
    "an empty file": ("empty.txt", b"", "is empty (0 bytes)"),
    "a binary file": ("data.bin", b"\x00\x01\x02\x03" * 100, "binary data, which chatweb cannot read"),
    "a damaged image": ("broken.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "could not be read as an image"),
    "a name with a path": ("../../etc/passwd.txt", b"hello", "contains a path separator or a control character"),
    "a name with a backslash": ("..\\boot.ini", b"hello", "contains a path separator or a control character"),
    "a name with a control character": ("bell\x07.txt", b"hello", "contains a path separator or a control character"),
    "a name with a bidi override": (
        "invoice\u202egpj.exe",
        b"hello",
        "contains a path separator or a control character",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_refused_with_a_reason_and_nothing_is_stored(case, user, storage_dir):
    name, data, reason = BAD[case]
    if data is None:
        data = pdf(None) if "no text" in case else pdf("Top secret", password="hunter2")
    response = upload(signed_in(user), name, data)

    assert response.status_code == 400
    body = response.content.decode()
    assert reason in body.replace("&#x27;", "'")
    assert 'role="alert"' in body
    assert "<script" not in body and "onload=" not in body  # the name is shown as text, never markup
    assert not Attachment.objects.exists()
    assert not stored_files(storage_dir)


def test_a_decompression_bomb_is_refused_unread(user, storage_dir):
    client = signed_in(user)
    data = bomb()
    assert len(data) < 100_000
    response = upload(client, "tiny.png", data)
    assert response.status_code == 400
    assert (
        "“tiny.png” is too large an image to open: images may have at most 50 megapixels." in response.content.decode()
    )

    out = io.BytesIO()
    Image.new("1", (8_000, 8_000)).save(out, "PNG")  # under Pillow's own limit, over chatweb's
    response = upload(client, "large.png", out.getvalue())
    assert response.status_code == 400
    assert "“large.png” is 8,000×8,000 pixels; images may have at most 50 megapixels." in response.content.decode()
    assert not Attachment.objects.exists() and not stored_files(storage_dir)


def test_size_limits_per_file_and_per_user(user, settings, storage_dir):
    settings.ATTACHMENTS = {**settings.ATTACHMENTS, "MAX_FILE_BYTES": 1000, "USER_MAX_BYTES": 1500}
    client = signed_in(user)

    over = upload(client, "big.txt", b"x" * 1001)
    assert over.status_code == 400
    assert "“big.txt” is 1001\xa0bytes; a file may be at most 1000\xa0bytes." in over.content.decode()

    assert upload(client, "first.txt", b"a" * 900).status_code == 200
    second = upload(client, "second.txt", b"b" * 900)
    assert second.status_code == 400
    assert "more than the 1.5\xa0KB you may keep" in second.content.decode()
    assert [a.name for a in Attachment.objects.all()] == ["first.txt"]
    assert len(stored_files(storage_dir)) == 1


# --- Reading files back ----------------------------------------------------------------------


def test_a_file_is_served_to_its_owner_only_and_never_as_a_page(user, other_user, admin_user):
    image = upload(signed_in(user), "cat.png", png())
    document = upload(signed_in(user), "notes.html", b"<p>hello <b>there</b></p>")
    assert image.status_code == document.status_code == 200
    picture, page = Attachment.objects.order_by("pk")

    shown = signed_in(user).get(f"/files/{picture.pk}")
    assert shown.status_code == 200 and shown["Content-Type"] == "image/png"
    assert shown["Content-Disposition"] == 'inline; filename="cat.png"'
    assert shown["X-Content-Type-Options"] == "nosniff"
    assert b"".join(shown.streaming_content) == picture.file.open("rb").read()

    download = signed_in(user).get(f"/files/{page.pk}")
    assert download["Content-Type"] == "text/plain; charset=utf-8"  # an HTML file is text to download, never a page
    assert download["Content-Disposition"] == 'attachment; filename="notes.html"'
    assert "sandbox" in download["Content-Security-Policy"]

    assert signed_in(other_user).get(f"/files/{picture.pk}").status_code == 404
    assert signed_in(other_user).post(f"/files/{picture.pk}/delete").status_code == 404
    assert signed_in(admin_user).get(f"/files/{picture.pk}").status_code == 200  # admins review transcripts
    assert signed_in(user).get("/files/99999999").status_code == 404


def test_removing_an_unsent_upload_deletes_its_file(user, storage_dir):
    client = signed_in(user)
    upload(client, "a.txt", b"hello")
    attachment = Attachment.objects.get()

    assert client.post(f"/files/{attachment.pk}/delete").status_code == 200
    assert not Attachment.objects.exists() and not stored_files(storage_dir)


# --- Sending ----------------------------------------------------------------------------------


async def _upload(user: Any, name: str, data: bytes) -> Attachment:
    response = await sync_to_async(lambda: upload(signed_in(user), name, data))()
    assert response.status_code == 200, response.content
    return await Attachment.objects.alatest("pk")


async def test_a_vision_model_gets_the_image_inline_and_the_document_as_a_delimited_block(
    user, chat_model, upstream, open_tab
):
    chat_model.accepts_images = True
    await chat_model.asave()
    image = await _upload(user, "chart.png", png(3000, 1000))
    document = await _upload(user, "report.pdf", pdf("Revenue grew by 42 percent."))
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    _, _, tab = await open_tab(user, conversation.pk)
    upstream.script(Reply(text="A chart and a report.", usage=False))  # as llama.cpp: no usage reported

    await tab.send(message="What do these say?", attachments=[str(image.pk), str(document.pk)])
    html = await tab.receive_until('class="message assistant" data-status="complete"')

    sent = upstream.requests[-1]["messages"][-1]
    assert sent["role"] == "user"
    text, picture = sent["content"]
    assert text == {
        "type": "text",
        "text": '<document name="report.pdf">\nRevenue grew by 42 percent.\n</document>\n\nWhat do these say?',
    }
    assert picture["type"] == "image_url"
    url = picture["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert Image.open(io.BytesIO(base64.b64decode(url.partition(",")[2]))).size == (2048, 683)  # downscaled
    assert f'src="/files/{image.pk}"' in html  # the thumbnail in the conversation
    assert "report.pdf" in html
    # The stored turn keeps a reference to the stored image, not the image itself.
    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    stored = await StoredCompletion.objects.aget(message=reply)
    assert stored.messages[-1]["content"][1] == {"type": "image_url", "image_url": {"url": f"/files/{image.pk}"}}
    # Usage without a provider report is estimated, images by the tile rule.
    record = await UsageRecord.objects.aget(message=reply)
    assert record.estimated and record.prompt_tokens >= image_tokens_estimate(width=2048, height=683) == 1445


async def test_an_image_for_a_model_without_vision_is_refused_before_sending(user, chat_model, upstream, open_tab):
    image = await _upload(user, "cat.png", png())
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    _, _, tab = await open_tab(user, conversation.pk)

    await tab.send(message="What is this?", attachments=str(image.pk))
    html = await tab.receive_until('id="composer-notice"')

    assert "Fake Model does not accept images (cat.png)" in html
    assert 'id="composer-input"' not in html  # the typed text is not reset
    assert upstream.requests == []
    assert not await Message.objects.filter(conversation=conversation).aexists()
    assert (await Attachment.objects.aget(pk=image.pk)).message_id is None  # still attached, unsent


async def test_another_users_file_or_too_many_files_are_refused_and_nothing_is_saved(
    user, other_user, chat_model, upstream, open_tab, settings
):
    settings.ATTACHMENTS = {**settings.ATTACHMENTS, "MAX_FILES": 2}
    theirs = await _upload(other_user, "theirs.txt", b"their secret")
    mine = [await _upload(user, f"{n}.txt", b"hello") for n in range(3)]
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    _, _, tab = await open_tab(user, conversation.pk)

    await tab.send(message="Read this", attachments=[str(theirs.pk)])
    assert "An attached file was not found" in await tab.receive_until('id="composer-notice"')
    await tab.send(message="Read these", attachments=[str(a.pk) for a in mine])
    assert "A message may have at most 2 files; this one has 3." in await tab.receive_until('id="composer-notice"')

    assert upstream.requests == []
    assert not await Message.objects.filter(conversation=conversation).aexists()
    assert not await Attachment.objects.filter(message__isnull=False).aexists()


async def test_a_document_over_the_models_context_is_refused_with_the_numbers(user, chat_model, upstream, open_tab):
    chat_model.context_tokens, chat_model.max_tokens = 1000, 200
    await chat_model.asave()
    document = await _upload(user, "novel.txt", ("It was a dark and stormy night. " * 400).encode())
    conversation = await Conversation.objects.acreate(user=user, model=chat_model)
    _, _, tab = await open_tab(user, conversation.pk)

    await tab.send(message="Summarise", attachments=[str(document.pk)])
    html = await tab.receive_until('id="composer-notice"')

    assert f"novel.txt (about {document.tokens:,} tokens)" in html
    assert "the model reads at most 1,000" in html and "room for the reply (200)" in html
    assert upstream.requests == [] and not await Message.objects.filter(conversation=conversation).aexists()


async def test_a_new_chat_with_only_a_file_starts_and_a_refused_one_keeps_text_and_files(user, chat_model, upstream):
    client = AsyncClient()
    await sync_to_async(client.force_login)(user, backend="conversations.accounts.auth.PasswordBackend")
    image = await _upload(user, "cat.png", png())

    refused = await client.post("/c/new", {"message": "What is it?", "attachments": [image.pk]})
    assert refused.status_code == 400
    body = refused.content.decode()
    assert "does not accept images" in body and "What is it?</textarea>" in body
    assert f'name="attachments" value="{image.pk}"' in body  # still attached, to send to another model

    notes = await _upload(user, "notes.md", b"# Notes\nBuy milk.")
    started = await client.post("/c/new", {"message": "", "attachments": [notes.pk]})
    assert started.status_code == 302
    conversation = await Conversation.objects.aget()
    assert conversation.title == "notes.md"
    reply = await Message.objects.aget(conversation=conversation, role="assistant")
    assert (await wait_for_status(reply.pk, "complete")).status == "complete"
    assert (
        upstream.requests[-1]["messages"][-1]["content"]
        == '<document name="notes.md">\n# Notes\nBuy milk.\n</document>'
    )


def test_deleting_a_conversation_deletes_its_files(user, chat_model, storage_dir):
    client = signed_in(user)
    upload(client, "notes.md", b"# Notes")
    conversation = Conversation.objects.create(user=user, model=chat_model)
    message_send(conversation=conversation, content="Read this", attachment_ids=[Attachment.objects.get().pk])
    assert stored_files(storage_dir)

    client.post(f"/c/{conversation.pk}/delete")
    assert not Attachment.objects.exists()
    assert not stored_files(storage_dir)


def test_image_tokens_follow_openais_published_tile_rule():
    assert image_tokens_estimate(width=1024, height=1024) == 765  # OpenAI's examples
    assert image_tokens_estimate(width=2048, height=4096) == 1105
    assert image_tokens_estimate(width=4096, height=8192, detail="low") == 85


# --- Where a message shows ----------------------------------------------------------------------


def _conversation_with_files(
    user: Any, chat_model: Any, *, notes_name: str = "notes.md", notes_text: bytes = b"# Notes"
) -> tuple[Conversation, Attachment, Attachment]:
    """A conversation with a vision model whose first message carries an image and a document."""
    client = signed_in(user)
    upload(client, "chart.png", png())
    upload(client, notes_name, notes_text)
    image, notes = Attachment.objects.order_by("pk")
    chat_model.accepts_images = True
    chat_model.save()
    conversation = Conversation.objects.create(user=user, model=chat_model, title="Files")
    message_send(conversation=conversation, content="Look", attachment_ids=[image.pk, notes.pk])
    return conversation, image, notes


def test_the_admin_shows_images_as_thumbnails_and_documents_as_chips(user, chat_model, admin_client):
    conversation, image, notes = _conversation_with_files(
        user, chat_model, notes_text=b"# Notes\n<script>alert(1)</script>"
    )
    text = f'<document name="notes.md">\n{notes.text}\n</document>\n\nLook'
    StoredCompletion.objects.create(
        id="chatcmpl-attached",
        user=user,
        model=chat_model.name,
        source="chat",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": text},
                    {"type": "image_url", "image_url": {"url": f"/files/{image.pk}"}},
                ],
            }
        ],
    )

    stored = admin_client.get("/admin/conversations/storedcompletion/chatcmpl-attached/change/").content.decode()
    assert f'<img src="/files/{image.pk}"' in stored
    assert "<summary>notes.md" in stored and "&lt;script&gt;alert(1)&lt;/script&gt;" in stored
    assert "<script>alert(1)" not in stored
    transcript = admin_client.get(f"/admin/conversations/conversation/{conversation.pk}/change/").content.decode()
    assert f'<img src="/files/{image.pk}" alt="chart.png"' in transcript
    assert f'<a href="/files/{notes.pk}">notes.md</a>' in transcript


def test_a_shared_link_shows_the_files_and_serves_only_those_until_revoked(user, chat_model, client):
    conversation, image, notes = _conversation_with_files(user, chat_model, notes_name="<i>notes<i>.md")
    owner = signed_in(user)
    upload(owner, "unshared.png", png(color="blue"))
    unshared = Attachment.objects.get(name="unshared.png")
    link = share_create(user=user, conversation=conversation)

    page = client.get(f"/s/{link.token}").content.decode()  # nobody signed in
    assert f'<img src="/s/{link.token}/files/{image.pk}" alt="chart.png"' in page
    assert "&lt;i&gt;notes&lt;i&gt;.md" in page and "<i>notes" not in page
    served = client.get(f"/s/{link.token}/files/{image.pk}")
    assert served.status_code == 200 and served["Content-Type"] == "image/png"
    assert b"".join(served.streaming_content) == image.file.open("rb").read()
    assert served["X-Content-Type-Options"] == "nosniff" and "noindex" in served["X-Robots-Tag"]
    assert client.get(f"/s/{link.token}/files/{notes.pk}")["Content-Disposition"].startswith("attachment")
    assert client.get(f"/s/{link.token}/files/{unshared.pk}").status_code == 404  # not in the snapshot
    assert client.get(f"/files/{image.pk}").status_code in (302, 404)  # the owner's own URL stays private

    share_revoke(link=link)
    assert client.get(f"/s/{link.token}/files/{image.pk}").status_code == 404


def test_the_export_zip_holds_each_conversations_files_where_its_json_says(user, chat_model):
    conversation, image, notes = _conversation_with_files(user, chat_model, notes_name="<i>notes<i>.md")

    response = signed_in(user).get("/export/all.zip")
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    [entry] = json.loads(archive.read("conversations.json"))
    listed = {file["name"]: file for message in entry["messages"] for file in message["attachments"]}
    assert set(listed) == {"chart.png", "<i>notes<i>.md"}
    assert archive.read(listed["chart.png"]["file"]) == image.file.open("rb").read()
    assert archive.read(listed["<i>notes<i>.md"]["file"]) == b"# Notes"
    assert listed["chart.png"]["content_type"] == "image/png"


def test_v1_stored_completions_keep_image_parts_and_list_them_as_content_parts(
    live_server_url, user, chat_model, upstream, admin_client
):
    import openai

    from conversations.accounts.api_keys import api_key_create

    client = openai.OpenAI(
        base_url=f"{live_server_url}/v1", api_key=api_key_create(user=user, name="t")[1], max_retries=0
    )
    url = "data:image/png;base64," + base64.b64encode(png(1024, 1024)).decode()
    upstream.script(Reply(text="A red square.", usage=False))
    completion = client.chat.completions.create(
        model="fake-model",
        store=True,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            }
        ],
    )

    (listed,) = client.chat.completions.messages.list(completion.id)
    assert listed.content == "What is this?"
    assert listed.content_parts[1].type == "image_url" and listed.content_parts[1].image_url.url == url
    assert UsageRecord.objects.get(stored_completion_id=completion.id).prompt_tokens >= 765  # the tile rule, estimated
    page = admin_client.get(f"/admin/conversations/storedcompletion/{completion.id}/change/").content.decode()
    assert f'<img src="{url}"' in page
