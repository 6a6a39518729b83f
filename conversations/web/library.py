"""Pages and actions for finding and keeping conversations: search, the sidebar's pages, pin,
archive, folders and bulk actions. Domain errors map to HTTP in ``web/errors.py``."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from conversations.chat.selectors import conversation_get
from conversations.chat.turns import conversation_branch_select
from conversations.core.errors import ChatwebError, NotFound
from conversations.core.ids import page_cursor_parse, row_id, row_id_valid
from conversations.core.requests import SignedInRequest
from conversations.library import keeping as library
from conversations.library.search import conversation_search, search_query_parse
from conversations.library.selectors import (
    conversation_archived,
    conversation_pinned,
    conversation_sidebar_page,
    folder_get,
    folder_list,
    sidebar_group,
)
from conversations.models import Conversation, Folder
from conversations.web.errors import page_back

TEMPLATE = "conversations/library.html"
CHAT = "conversations/chat.html"


def sidebar_rows(conversations: list[Conversation], *, previous: str = "") -> list[tuple[Conversation, str]]:
    """Each conversation with the group heading to show above it ("" when it is in the previous one's group)."""
    today = timezone.localdate()
    rows = []
    for conversation in conversations:
        group = sidebar_group(at=conversation.updated_at, today=today)
        rows.append((conversation, "" if group == previous else group))
        previous = group
    return rows


def sidebar_context(*, user, conversation: Conversation | None = None) -> dict:
    """What the sidebar needs for its first page (pinned ones, the first page, folders); the chat page adds it."""
    page, next_cursor = conversation_sidebar_page(user=user, through=conversation)
    rows = sidebar_rows(page)
    listed = any(item.pk == getattr(conversation, "pk", None) for item, _ in rows)
    return {
        "pinned_conversations": conversation_pinned(user=user),
        "sidebar_rows": rows,
        "sidebar_next": next_cursor,
        "sidebar_last_group": sidebar_group(at=page[-1].updated_at, today=timezone.localdate()) if page else "",
        "sidebar_unlisted": conversation if conversation and not conversation.pinned and not listed else None,
        "folders": folder_list(user=user),
    }


@login_required
def sidebar_page(request: SignedInRequest) -> HttpResponse:
    """The next page of the sidebar, loaded as the user scrolls to its end."""
    cursor = page_cursor_parse(request.GET.get("cursor", ""))
    if cursor is None:
        return HttpResponse("?cursor= names no page of the list.", status=400)
    page, next_cursor = conversation_sidebar_page(user=request.user, cursor=cursor)
    previous = request.GET.get("group", "")
    context = {
        "sidebar_rows": sidebar_rows(page, previous=previous),
        "sidebar_next": next_cursor,
        "sidebar_last_group": sidebar_group(at=page[-1].updated_at, today=timezone.localdate()) if page else previous,
    }
    return render(request, f"{CHAT}#sidebar-page", context)


@login_required
def search(request: SignedInRequest) -> HttpResponse:
    """Search results: the sidebar's panel for htmx (as the user types), a page otherwise."""
    text = request.GET.get("q", "")[:500]
    context: dict = {"q": text}
    try:
        context["results"] = conversation_search(
            user=request.user, query=search_query_parse(text), cursor=request.GET.get("cursor", "")
        )
    except ChatwebError as exc:
        context["search_error"] = exc.message
    if request.htmx:
        partial = "search-more" if request.GET.get("cursor") else "search-results"
        return render(request, f"{TEMPLATE}#{partial}", context)
    return render(request, TEMPLATE, {**context, "page": "search"})


@login_required
def archived(request: SignedInRequest) -> HttpResponse:
    return render(request, TEMPLATE, {"page": "archived", "conversations": conversation_archived(user=request.user)})


def _conversation(request: SignedInRequest, conversation_id: int) -> Conversation:
    return conversation_get(user=request.user, conversation_id=conversation_id)


@login_required
@require_POST
def conversation_pin(request: SignedInRequest, conversation_id: int) -> HttpResponse:
    conversation = _conversation(request, conversation_id)
    library.conversation_pin(conversation=conversation, pinned=request.POST.get("pinned") == "1")
    return page_back(request)


@login_required
@require_POST
def conversation_archive(request: SignedInRequest, conversation_id: int) -> HttpResponse:
    conversation = _conversation(request, conversation_id)
    archive = request.POST.get("archived") == "1"
    library.conversation_archive(conversation=conversation, archived=archive)
    return redirect("home") if archive else page_back(request)


@login_required
@require_POST
def conversation_move(request: SignedInRequest, conversation_id: int) -> HttpResponse:
    """File the conversation in a folder: an existing one (``folder``), a new one (``new_folder``), or none."""
    conversation = _conversation(request, conversation_id)
    library.conversation_move(conversation=conversation, folder=_folder_chosen(request))
    return page_back(request)


def _folder_chosen(request: SignedInRequest) -> Folder | None:
    new_name = request.POST.get("new_folder", "").strip()
    if new_name:
        return library.folder_create(user=request.user, name=new_name)
    raw = request.POST.get("folder", "")
    if not raw:
        return None
    folder_id = row_id(raw)
    if folder_id is None:
        raise NotFound("No such folder.")
    return folder_get(user=request.user, folder_id=folder_id)


@login_required
@require_POST
def folder_create(request: SignedInRequest) -> HttpResponse:
    library.folder_create(user=request.user, name=request.POST.get("name", ""))
    return page_back(request)


@login_required
@require_POST
def folder_delete(request: SignedInRequest, folder_id: int) -> HttpResponse:
    library.folder_delete(folder=folder_get(user=request.user, folder_id=folder_id))
    return page_back(request)


@login_required
@require_POST
def conversations_bulk(request: SignedInRequest) -> HttpResponse:
    """Archive, restore, move, pin or delete the selected conversations at once."""
    ids: list[int] = []
    for raw in request.POST.getlist("ids"):
        conversation_id = row_id(raw)
        if conversation_id is None:
            raise NotFound("No such conversation.")
        ids.append(conversation_id)
    action = request.POST.get("action", "")
    folder = _folder_chosen(request) if action == "move" else None
    count = library.conversations_bulk(user=request.user, conversation_ids=ids, action=action, folder=folder)
    done = {
        "archive": "archived",
        "restore": "restored",
        "move": "moved",
        "delete": "deleted",
        "pin": "pinned",
        "unpin": "unpinned",
    }[action]
    messages.success(request, f"{count} conversation{'s' if count != 1 else ''} {done}.")
    return page_back(request)


@login_required
def conversation_open_at(request: SignedInRequest, conversation_id: int, message_id: int) -> HttpResponse:
    """Open a conversation at one of its messages (a search result): its branch becomes the current one."""
    conversation = _conversation(request, conversation_id)
    message = conversation.messages.filter(pk=message_id).first() if row_id_valid(message_id) else None
    if message is None:
        raise NotFound("No such message.")
    conversation_branch_select(conversation=conversation, message=message)
    return redirect(reverse("conversation_detail", args=[conversation.pk]) + f"#message-{message_id}")
