"""Export (Markdown, chatweb JSON, a zip of everything) and import (ChatGPT, chatweb, Open WebUI)."""

from __future__ import annotations

from typing import TypeVar

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from conversations.chat.selectors import conversation_get
from conversations.core.errors import InvalidInput, NotFound
from conversations.core.ids import row_id
from conversations.core.requests import SignedInRequest
from conversations.library.export import (
    conversation_markdown,
    conversations_json,
    conversations_zip,
    export_conversations,
    export_estimate,
)
from conversations.library.imports.run import import_start
from conversations.models import ImportRun

TEMPLATE = "conversations/library.html"
_Response = TypeVar("_Response", HttpResponse, StreamingHttpResponse)


def _attachment(response: _Response, name: str) -> _Response:
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@login_required
def conversation_export(request: SignedInRequest, conversation_id: int, kind: str) -> HttpResponse:
    """One conversation: ``md`` its current path, ``json`` its whole tree."""
    if kind not in ("md", "json"):
        raise NotFound("Exports are .md or .json.")
    conversation = conversation_get(user=request.user, conversation_id=conversation_id)
    (full,) = export_conversations(user=request.user, conversation_ids=[conversation.pk])
    if kind == "md":
        body = conversation_markdown(full)
        return _attachment(HttpResponse(body, content_type="text/markdown; charset=utf-8"), f"chat-{full.pk}.md")
    body = "".join(conversations_json([full]))
    return _attachment(HttpResponse(body, content_type="application/json"), f"chat-{full.pk}.json")


@login_required
def export_all(request: SignedInRequest, kind: str) -> StreamingHttpResponse:
    """Every conversation of the user, streamed: chatweb JSON, or a zip of it with a Markdown file each."""
    if kind not in ("json", "zip"):
        raise NotFound("Exports of everything are .json or .zip.")
    stamp = timezone.now().strftime("%Y%m%d")
    user = request.user
    if kind == "json":
        response = StreamingHttpResponse(
            conversations_json(export_conversations(user=user)), content_type="application/json"
        )
        return _attachment(response, f"chatweb-conversations-{stamp}.json")
    count, estimate = export_estimate(user=user)
    response = StreamingHttpResponse(
        conversations_zip(lambda: export_conversations(user=user)), content_type="application/zip"
    )
    response["X-Export-Conversations"] = str(count)
    response["X-Export-Estimate"] = str(estimate)
    return _attachment(response, f"chatweb-conversations-{stamp}.zip")


def _transfer_page(request: SignedInRequest, *, import_error: str = "", status: int = 200) -> HttpResponse:
    count, estimate = export_estimate(user=request.user)
    runs = ImportRun.objects.filter(user=request.user)[:10]
    context = {"page": "transfer", "count": count, "estimate": estimate, "runs": runs, "import_error": import_error}
    return render(request, TEMPLATE, context, status=status)


@login_required
def transfer(request: SignedInRequest) -> HttpResponse:
    """Export and import: the download buttons, the upload form, and the user's recent imports."""
    return _transfer_page(request)


@login_required
@require_POST
def import_upload(request: SignedInRequest) -> HttpResponse:
    """Check the file and start importing it; the answer is the import's progress page."""
    declared = row_id(request.META.get("CONTENT_LENGTH") or "") or 0
    if declared > settings.IMPORT_MAX_BYTES + (1 << 20):  # refused before the body is read
        limit = settings.IMPORT_MAX_BYTES / 2**20
        return _transfer_page(
            request,
            import_error=f"That file is larger than the {limit:,.0f} MB an import may be. "
            "Split the export, or ask an admin to raise IMPORT_MAX_BYTES.",
            status=413,
        )
    upload = request.FILES.get("file")
    if upload is None:
        return _transfer_page(request, import_error="Choose an export file to import.", status=400)
    try:
        # Django's upload handlers always know the size; None (a file of unknown size) would count as empty.
        size = upload.size or 0
        run, before = import_start(user=request.user, upload=upload, size=size, filename=upload.name or "")
    except InvalidInput as exc:
        return _transfer_page(request, import_error=exc.message, status=400)
    url = reverse("import_progress", args=[run.pk])
    return redirect(url + (f"?before={before.pk}" if before else ""))


@login_required
def import_progress(request: SignedInRequest, run_id: int) -> HttpResponse:
    """An import's progress; htmx asks again every second while it runs."""
    run = ImportRun.objects.filter(user=request.user, pk=run_id).first()
    if run is None:
        raise NotFound("No such import.")
    before_id = row_id(request.GET.get("before", ""))
    before = ImportRun.objects.filter(user=request.user, pk=before_id).first() if before_id else None
    context = {"page": "import", "run": run, "before": before}
    if request.htmx:
        return render(request, f"{TEMPLATE}#import-progress", context)
    return render(request, TEMPLATE, context)
