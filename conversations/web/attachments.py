"""Uploading, removing and serving files attached to messages."""

from django.contrib.auth.decorators import login_required
from django.http import (
    FileResponse,
    HttpResponse,
)
from django.shortcuts import render
from django.views.decorators.http import require_POST

from conversations.chat.attachments.lifecycle import attachment_discard
from conversations.chat.attachments.upload import attachment_upload
from conversations.chat.selectors import (
    attachment_get,
)
from conversations.core.errors import InvalidInput
from conversations.core.requests import SignedInRequest
from conversations.models import Attachment
from conversations.web.shell import TEMPLATE


@login_required
@require_POST
def attachment_create(request: SignedInRequest) -> HttpResponse:
    """Upload one file for the message being written; answers its chip (400 with the reason when refused)."""
    upload = request.FILES.get("file")
    name = request.POST.get("name")
    try:
        if upload is None:
            raise InvalidInput("No file was received. Attach it again.")
        attachment = attachment_upload(user=request.user, upload=upload, name=name)
    except InvalidInput as exc:
        error = exc.message
        return render(request, f"{TEMPLATE}#attachment-error", {"error": error}, status=400)
    return render(request, f"{TEMPLATE}#attachment-chip", {"attachment": attachment, "editable": True})


@login_required
@require_POST
def attachment_delete(request: SignedInRequest, attachment_id: int) -> HttpResponse:
    """Take an upload back out of the composer (a file already sent stays with its message)."""
    attachment_discard(user=request.user, attachment_id=attachment_id)
    return HttpResponse("")


@login_required
def attachment_file(request: SignedInRequest, attachment_id: int) -> FileResponse:
    """A stored file, to its owner (and admins) only: images inline, anything else as a download,
    never sniffed by the browser and never run as a page."""
    return attachment_response(attachment_get(user=request.user, attachment_id=attachment_id))


def attachment_response(attachment: Attachment) -> FileResponse:
    """A stored file as a response: images inline, anything else as a download, never sniffed, never run."""
    response = FileResponse(
        attachment.file.open("rb"),
        as_attachment=not attachment.is_image,
        filename=attachment.name,
        content_type="text/plain; charset=utf-8"
        if attachment.content_type == "text/plain"
        else attachment.content_type,
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, max-age=3600"
    return response
