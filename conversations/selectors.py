"""Reads, always scoped to the user asking: another user's id is simply not found."""

from datetime import date, datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import F, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce, NullIf
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.utils import timezone

from .ids import older_than, page_cursor, row_id_valid
from .models import (
    ApiKey,
    ChatModel,
    Conversation,
    Folder,
    Message,
    SharedLink,
    SiteSettings,
    UsageRecord,
    UserPreferences,
)


def conversation_list(*, user: AbstractBaseUser) -> QuerySet[Conversation]:
    return Conversation.objects.filter(user=user).order_by("-updated_at", "-id")


def conversation_get(*, user: AbstractBaseUser, conversation_id: int) -> Conversation:
    """The user's conversation, or Http404."""
    if not row_id_valid(conversation_id):
        raise Http404("No such conversation.")
    return get_object_or_404(conversation_list(user=user).select_related("model"), pk=conversation_id)


async def conversation_afind(*, user: AbstractBaseUser, conversation_id: int) -> Conversation | None:
    """The user's conversation, or None: for sockets, which have no 404 page."""
    if not row_id_valid(conversation_id):
        return None
    return await conversation_list(user=user).select_related("model").filter(pk=conversation_id).afirst()


def message_path_ids(*, conversation: Conversation, leaf_id: int | None = None) -> list[int]:
    """The ids from the conversation's first message down to ``leaf_id`` (by default its current leaf, read
    afresh: a socket holds its conversation for hours), root first; empty for an empty conversation."""
    if leaf_id is None:
        leaf_id = Conversation.objects.filter(pk=conversation.pk).values_list("current_leaf_id", flat=True).first()
    parents = dict(Message.objects.filter(conversation_id=conversation.pk).values_list("pk", "parent_id"))
    path: list[int] = []
    while leaf_id is not None and len(path) <= len(parents):
        path.append(leaf_id)
        leaf_id = parents.get(leaf_id)
    return path[::-1]


def message_list(*, conversation: Conversation) -> QuerySet[Message]:
    """The messages of the conversation's current path with their usage rows joined and ``model_label``
    (the display name of the model that wrote a reply, or its name), so rendering them (sync or async)
    runs no query."""
    display_name = ChatModel.objects.filter(name=OuterRef("model_name")).values("display_name")[:1]
    return (
        conversation.messages.filter(pk__in=message_path_ids(conversation=conversation))
        .select_related("usage")
        .annotate(model_label=Coalesce(NullIf(Subquery(display_name), Value("")), F("model_name")))
        .order_by("created_at", "id")
    )


MESSAGES_PER_PAGE = 100


def message_page(
    *, conversation: Conversation, before_id: int | None = None, limit: int = MESSAGES_PER_PAGE
) -> tuple[list[Message], bool]:
    """The latest ``limit`` messages (before ``before_id`` if given), oldest first, and whether earlier ones exist."""
    rows = message_list(conversation=conversation)
    if before_id is not None:
        rows = rows.filter(pk__lt=before_id)
    latest = list(rows.order_by("-created_at", "-id")[: limit + 1])
    return latest[:limit][::-1], len(latest) > limit


def message_get(*, conversation: Conversation, message_id: int) -> Message:
    """A message of the conversation, or Http404."""
    return get_object_or_404(message_list(conversation=conversation), pk=message_id)


def message_list_of(*, conversation: Conversation, message_ids: list[int]) -> list[Message]:
    return list(message_list(conversation=conversation).filter(pk__in=message_ids))


def chat_model_list() -> QuerySet[ChatModel]:
    return ChatModel.objects.filter(enabled=True, provider__enabled=True).select_related("provider")


def chat_model_default() -> ChatModel | None:
    models = chat_model_list()
    return models.filter(is_default=True).first() or models.first()


def api_key_list(*, user: AbstractBaseUser) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(user=user)


def usage_list(*, user: AbstractBaseUser) -> QuerySet[UsageRecord]:
    """The user's usage ledger: chat replies and /v1 calls."""
    return UsageRecord.objects.filter(user=user)


def user_theme(*, user: AbstractBaseUser) -> str:
    """The theme the user chose; ``system`` (follow the browser) for anyone who did not, or is signed out."""
    if not user.is_authenticated:
        return UserPreferences.Theme.SYSTEM
    chosen = UserPreferences.objects.filter(user=user).values_list("theme", flat=True).first()
    return chosen or UserPreferences.Theme.SYSTEM


SIDEBAR_PAGE = 50
# How far down the sidebar's first page reaches to list the open conversation; beyond, it is listed on its own.
SIDEBAR_REACH = 500


def conversation_pinned(*, user: AbstractBaseUser) -> list[Conversation]:
    """The user's pinned conversations (not archived), listed above the others."""
    return list(conversation_list(user=user).filter(pinned=True, archived=False).select_related("folder"))


def conversation_sidebar_page(
    *,
    user: AbstractBaseUser,
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


def conversation_archived(*, user: AbstractBaseUser) -> QuerySet[Conversation]:
    return conversation_list(user=user).filter(archived=True).select_related("folder")


def folder_list(*, user: AbstractBaseUser) -> QuerySet[Folder]:
    return Folder.objects.filter(user=user)


def folder_get(*, user: AbstractBaseUser, folder_id: int) -> Folder:
    if not row_id_valid(folder_id):
        raise Http404("No such folder.")
    return get_object_or_404(folder_list(user=user), pk=folder_id)


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


def shared_link_list(*, user: AbstractBaseUser) -> QuerySet[SharedLink]:
    return SharedLink.objects.filter(user=user)


def shared_link_get(*, user: AbstractBaseUser, link_id: int) -> SharedLink:
    if not row_id_valid(link_id):
        raise Http404("No such link.")
    return get_object_or_404(shared_link_list(user=user), pk=link_id)


def shared_link_public(*, token: str) -> SharedLink | None:
    """The active link of that token, for anyone (no sign-in); None when unknown, revoked or sharing is off."""
    if not SiteSettings.load().sharing_enabled:
        return None
    return SharedLink.objects.filter(token=token, revoked_at__isnull=True).first()
