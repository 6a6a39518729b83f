"""The chat's pages. Sending and streaming happen over the websocket (chat/consumer.py)."""

from typing import Any, cast

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.http import (
    HttpRequest,
    HttpResponse,
)
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from conversations.chat import turns as chat
from conversations.chat.selectors import (
    attachments_draft,
    conversation_get,
    message_get,
    message_page,
)
from conversations.chat.settings import (
    SETTINGS_FIELDS,
    conversation_settings_set,
    preset_get,
)
from conversations.core.errors import ChatwebError, InvalidInput
from conversations.core.ids import row_id
from conversations.core.requests import SignedInRequest
from conversations.web.shell import TEMPLATE, page_render


@login_required
def home(request: SignedInRequest) -> HttpResponse:
    """A new chat; ``?preset=<id>`` starts it from that preset, else from the user's default one."""
    preset = None
    if "preset" in request.GET:
        preset = preset_get(user=request.user, preset_id=request.GET["preset"])
    return page_render(request, preset=preset)


@login_required
def conversation_detail(request: SignedInRequest, conversation_id: int) -> HttpResponse:
    return page_render(request, conversation=conversation_get(user=request.user, conversation_id=conversation_id))


@login_required
def conversation_earlier_messages(request: SignedInRequest, conversation_id: int) -> HttpResponse:
    """The page of messages before ``?before=<id>``, loaded as the user scrolls up; without it, the
    latest page (a tab fetches it when a switched branch is more than one socket frame carries)."""
    conversation = conversation_get(user=request.user, conversation_id=conversation_id)
    before = row_id(request.GET["before"]) if "before" in request.GET else None
    if before is None and "before" in request.GET:
        return HttpResponse("?before=<message id> names no message.", status=400)
    messages, has_earlier = message_page(conversation=conversation, before_id=before)
    context = {"conversation": conversation, "messages": messages, "has_earlier": has_earlier}
    return render(request, f"{TEMPLATE}#earlier-messages", context)


@login_required
def message_detail(request: SignedInRequest, conversation_id: int, message_id: int) -> HttpResponse:
    """One message whole: a reply too long for one websocket frame is fetched here by the tab."""
    conversation = conversation_get(user=request.user, conversation_id=conversation_id)
    message = message_get(conversation=conversation, message_id=message_id)
    return render(request, f"{TEMPLATE}#message", {"message": message})


@login_required
def message_markdown(request: SignedInRequest, conversation_id: int, message_id: int) -> HttpResponse:
    """A message's text as written (Markdown), for copying and editing it."""
    conversation = conversation_get(user=request.user, conversation_id=conversation_id)
    message = message_get(conversation=conversation, message_id=message_id)
    return HttpResponse(message.content, content_type="text/markdown; charset=utf-8")


@require_POST
async def conversation_new(request: HttpRequest) -> HttpResponse:
    """Start a conversation with its first message; the reply streams on its page."""
    user = await request.auser()
    if not user.is_authenticated:
        return redirect("login")
    content = request.POST.get("message", "")
    typed = {field: request.POST.get(field, "") for field in SETTINGS_FIELDS}
    attachment_ids = request.POST.getlist("attachments")
    try:
        conversation = await chat.chat_start(
            user=user,
            content=content,
            model_name=request.POST.get("model") or None,
            settings=typed,
            attachment_ids=attachment_ids,
        )
    except ChatwebError as exc:  # said above the composer, which keeps what was typed and attached
        settings_error = exc if isinstance(exc, InvalidInput) and exc.param in SETTINGS_FIELDS else None
        # Signed in, checked above: ``request.user`` is that user (``auser`` is its async reading).
        signed_in = cast(SignedInRequest, request)
        return await sync_to_async(_page_refused)(
            signed_in,
            notice=exc.message,
            draft=content,
            typed=typed,
            attachment_ids=attachment_ids,
            settings_error=settings_error,
        )
    return redirect("conversation_detail", conversation_id=conversation.pk)


def _page_refused(
    request: SignedInRequest,
    *,
    notice: str,
    draft: str,
    typed: dict[str, Any],
    attachment_ids: list[str],
    settings_error: InvalidInput | None = None,
) -> HttpResponse:
    """The new-chat page again after a refused send, with the text, settings and files that were typed and attached."""
    kept = attachments_draft(user=request.user, ids=attachment_ids)
    return page_render(
        request, notice=notice, draft=draft, draft_attachments=kept, typed_settings=typed,
        settings_error=settings_error, status=400,
    )  # fmt: skip


@login_required
@require_POST
def conversation_settings(request: SignedInRequest, conversation_id: int) -> HttpResponse:
    """Change the chat's system prompt and parameters (from its next turn on); htmx gets the panel back."""
    conversation = conversation_get(user=request.user, conversation_id=conversation_id)
    typed = {field: request.POST.get(field, "") for field in SETTINGS_FIELDS}
    htmx = bool(request.htmx)
    try:
        conversation_settings_set(conversation=conversation, data=typed)
    except InvalidInput as exc:
        if not htmx:
            return page_render(request, conversation=conversation, typed_settings=typed, settings_error=exc, status=400)
        context = {"conversation": conversation, "chat_settings": typed, "settings_error": exc, "settings_open": True}
        return render(request, f"{TEMPLATE}#chat-settings", context, status=400)
    if not htmx:
        return redirect("conversation_detail", conversation_id=conversation.pk)
    context = {
        "conversation": conversation,
        "chat_settings": conversation,
        "settings_saved": True,
        "settings_open": True,
    }
    return render(request, f"{TEMPLATE}#chat-settings", context)


@login_required
@require_POST
def conversation_rename(request: SignedInRequest, conversation_id: int) -> HttpResponse:
    conversation = conversation_get(user=request.user, conversation_id=conversation_id)
    context = {"conversation": conversation, "oob_link": True}
    try:
        chat.conversation_rename(conversation=conversation, title=request.POST.get("title", ""))
    except InvalidInput as exc:
        context["title_error"] = exc.message
        conversation.refresh_from_db()
    if request.htmx:
        return render(request, f"{TEMPLATE}#title-form", context)
    return redirect("conversation_detail", conversation_id=conversation.pk)


@login_required
@require_POST
def conversation_delete(request: SignedInRequest, conversation_id: int) -> HttpResponse:
    chat.conversation_delete(conversation=conversation_get(user=request.user, conversation_id=conversation_id))
    return redirect("home")
