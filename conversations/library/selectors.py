"""Reads of the sidebar, folders and shared links, scoped to the user asking."""

from datetime import date, datetime, timedelta

from django.contrib.auth.models import User
from django.db.models import Q, QuerySet
from django.utils import timezone

from conversations.chat.selectors import conversation_list
from conversations.core.errors import NotFound
from conversations.core.ids import older_than, page_cursor, row_id_valid
from conversations.models import (
    Conversation,
    Folder,
    SharedLink,
    SiteSettings,
)

SIDEBAR_PAGE = 50


# How far down the sidebar's first page reaches to list the open conversation; beyond, it is listed on its own.
SIDEBAR_REACH = 500


def conversation_pinned(*, user: User) -> list[Conversation]:
    """The user's pinned conversations (not archived), listed above the others."""
    return list(conversation_list(user=user).filter(pinned=True, archived=False).select_related("folder"))


def conversation_sidebar_page(
    *,
    user: User,
    cursor: tuple[datetime, int] | None = None,
    through: Conversation | None = None,
    limit: int = SIDEBAR_PAGE,
) -> tuple[list[Conversation], str]:
    """A page of the sidebar (neither pinned nor archived, newest activity first) and the cursor of the next.

    ``through``: the first page reaches down to that conversation (up to SIDEBAR_REACH rows), so the
    open one is listed and highlighted without the user scrolling for it.
    """
    rows = conversation_list(user=user).filter(pinned=False, archived=False).select_related("folder")
    if cursor is not None:
        rows = rows.filter(older_than(cursor, field="updated_at"))
    elif through is not None and not through.pinned and not through.archived:
        reach = rows.filter(Q(updated_at__gt=through.updated_at) | Q(updated_at=through.updated_at, pk__gte=through.pk))
        limit = max(limit, min(reach.count(), SIDEBAR_REACH))
    page = list(rows[: limit + 1])
    if len(page) <= limit:
        return page, ""
    last = page[limit - 1]
    return page[:limit], page_cursor(last.updated_at, last.pk)


def conversation_archived(*, user: User) -> QuerySet[Conversation]:
    return conversation_list(user=user).filter(archived=True).select_related("folder")


def folder_list(*, user: User) -> QuerySet[Folder]:
    return Folder.objects.filter(user=user)


def folder_get(*, user: User, folder_id: int) -> Folder:
    found = folder_list(user=user).filter(pk=folder_id).first() if row_id_valid(folder_id) else None
    if found is None:
        raise NotFound("No such folder.")
    return found


def sidebar_group(*, at: datetime, today: date) -> str:
    """The heading a conversation last active at ``at`` is listed under."""
    day = timezone.localtime(at).date()
    if day >= today:
        return "Today"
    if day == today - timedelta(days=1):
        return "Yesterday"
    if day > today - timedelta(days=7):
        return "Previous 7 days"
    if day > today - timedelta(days=30):
        return "Previous 30 days"
    return "Older"


def shared_link_list(*, user: User) -> QuerySet[SharedLink]:
    return SharedLink.objects.filter(user=user)


def shared_link_get(*, user: User, link_id: int) -> SharedLink:
    found = shared_link_list(user=user).filter(pk=link_id).first() if row_id_valid(link_id) else None
    if found is None:
        raise NotFound("No such link.")
    return found


def shared_link_public(*, token: str) -> SharedLink | None:
    """The active link of that token, for anyone (no sign-in); None when unknown, revoked or sharing is off."""
    if not SiteSettings.load().sharing_enabled:
        return None
    return SharedLink.objects.filter(token=token, revoked_at__isnull=True).first()
