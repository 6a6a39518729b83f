"""Share links: made from a conversation's menu, listed and revoked by their owner, read by anyone."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from conversations.chat.selectors import conversation_get
from conversations.core.errors import NotFound, SharingOff
from conversations.core.requests import SignedInRequest
from conversations.library.selectors import (
    shared_link_get,
    shared_link_list,
    shared_link_public,
)
from conversations.library.sharing import (
    share_create,
    share_revoke,
    shared_attachment,
    shared_messages,
    sharing_enabled,
)
from conversations.web.attachments import attachment_response

TEMPLATE = "conversations/library.html"


@login_required
@require_POST
def conversation_share(request: SignedInRequest, conversation_id: int) -> HttpResponse:
    conversation = conversation_get(user=request.user, conversation_id=conversation_id)
    try:
        link = share_create(user=request.user, conversation=conversation)
    except SharingOff as exc:  # said on the conversation; NotFound is the 404 page (web/errors.py)
        messages.error(request, exc.message)
        return redirect("conversation_detail", conversation_id=conversation.pk)
    return redirect(reverse("shared_links") + f"?new={link.pk}")


@login_required
def shared_links(request: SignedInRequest) -> HttpResponse:
    """The user's links, newest first; the one just made (``?new=``) with its address to copy."""
    links = list(shared_link_list(user=request.user).select_related("conversation"))
    new = next((link for link in links if str(link.pk) == request.GET.get("new")), None)
    context = {"page": "shared", "links": links, "new_link": new, "sharing_enabled": sharing_enabled()}
    return render(request, TEMPLATE, context)


@login_required
@require_POST
def shared_link_revoke(request: SignedInRequest, link_id: int) -> HttpResponse:
    share_revoke(link=shared_link_get(user=request.user, link_id=link_id))
    return redirect("shared_links")


def shared_view(request: HttpRequest, token: str) -> HttpResponse:
    """The public, read-only snapshot; unknown, revoked or switched off is 404. Never indexed."""
    link = shared_link_public(token=token)
    if link is None:
        raise NotFound("No such shared conversation.")
    response = render(request, "conversations/shared.html", {"link": link, "entries": shared_messages(link=link)})
    response["X-Robots-Tag"] = "noindex, nofollow"
    response["Referrer-Policy"] = "no-referrer"
    return response


def shared_file(request: HttpRequest, token: str, attachment_id: int) -> FileResponse:
    """A file attached to a message of the snapshot, to anyone holding the link; 404 once it is revoked."""
    link = shared_link_public(token=token)
    if link is None:
        raise NotFound("No such shared conversation.")
    attachment = shared_attachment(link=link, attachment_id=attachment_id)
    response = attachment_response(attachment)
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response
