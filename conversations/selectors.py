"""Reads, always scoped to the user asking: another user's id is simply not found."""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce, NullIf
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.utils import timezone

from .ids import older_than, page_cursor, row_id, row_id_valid
from .models import (
    ApiKey,
    Attachment,
    ChatModel,
    Conversation,
    Folder,
    Message,
    SharedLink,
    SiteSettings,
    UsageRecord,
    UserPreferences,
)
from .services.access import access_of, key_model_ids


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


PATH_MAX_DEPTH = 1_000_000  # a bound on the walk up the parents, should they ever loop


def message_path_ids(*, conversation: Conversation, leaf_id: int | None = None) -> list[int]:
    """The ids from the conversation's first message down to ``leaf_id`` (by default its current leaf, read
    afresh: a socket holds its conversation for hours), root first; empty for an empty conversation.

    One recursive query walks up the parents, reading only the path's rows however many branches
    the conversation has.
    """
    if leaf_id is None:
        leaf_id = conversation_leaf_id(conversation=conversation)
    if leaf_id is None:
        return []
    table = connection.ops.quote_name(Message._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""WITH RECURSIVE path(id, parent_id, depth) AS (
                    SELECT id, parent_id, 0 FROM {table} WHERE id = %s AND conversation_id = %s
                    UNION ALL
                    SELECT m.id, m.parent_id, p.depth + 1 FROM {table} m JOIN path p ON m.id = p.parent_id
                    WHERE m.conversation_id = %s AND p.depth < %s
                )
                SELECT id FROM path ORDER BY depth DESC""",  # noqa: S608 - the table name is the model's own
            [leaf_id, conversation.pk, conversation.pk, PATH_MAX_DEPTH],
        )
        return [row[0] for row in cursor.fetchall()]


def message_subtree_ids(*, conversation: Conversation, message_id: int) -> list[int]:
    """The ids of a message of the conversation and of every message below it, in one recursive query."""
    table = connection.ops.quote_name(Message._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""WITH RECURSIVE below(id, depth) AS (
                    SELECT id, 0 FROM {table} WHERE id = %s AND conversation_id = %s
                    UNION ALL
                    SELECT m.id, b.depth + 1 FROM {table} m JOIN below b ON m.parent_id = b.id
                    WHERE m.conversation_id = %s AND b.depth < %s
                )
                SELECT id FROM below""",  # noqa: S608 - the table name is the model's own
            [message_id, conversation.pk, conversation.pk, PATH_MAX_DEPTH],
        )
        return [row[0] for row in cursor.fetchall()]


def conversation_leaf_id(*, conversation: Conversation) -> int | None:
    """The conversation's current leaf as it is now (another tab may have switched branch)."""
    return Conversation.objects.filter(pk=conversation.pk).values_list("current_leaf_id", flat=True).first()


def branch_page(*, conversation: Conversation) -> tuple[list[Message], bool, list[int], set[int]]:
    """What a tab is sent when the current path changed: its latest page of messages, whether earlier
    ones exist, the replies streaming on it, and those streaming on other branches.

    A reply streaming on the path is on its latest page: nothing can be sent after it until it ends.
    """
    messages, has_earlier = message_page(conversation=conversation)
    shown = [message.pk for message in messages if message.is_streaming]
    running = Message.objects.filter(conversation_id=conversation.pk, status=Message.Status.STREAMING)
    return messages, has_earlier, shown, set(running.values_list("pk", flat=True)) - set(shown)


def message_list(*, conversation: Conversation) -> QuerySet[Message]:
    """The messages of the conversation's current path with ``model_label`` (the display name of the
    model that wrote a reply, or its name); ``messages_for_display`` adds their usage and versions."""
    display_name = ChatModel.objects.filter(name=OuterRef("model_name")).values("display_name")[:1]
    return (
        conversation.messages.filter(pk__in=message_path_ids(conversation=conversation))
        .prefetch_related("attachments")
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
    return messages_for_display(latest[:limit][::-1]), len(latest) > limit


def message_get(*, conversation: Conversation, message_id: int) -> Message:
    """A message of the conversation, or Http404."""
    return messages_for_display([get_object_or_404(message_list(conversation=conversation), pk=message_id)])[0]


def message_list_of(*, conversation: Conversation, message_ids: list[int]) -> list[Message]:
    return messages_for_display(list(message_list(conversation=conversation).filter(pk__in=message_ids)))


def messages_for_display(messages: list[Message]) -> list[Message]:
    """The messages with what their partial shows besides their own row: each reply's usage and each
    message's versions, in two queries for the lot, so rendering them (sync or async) runs none."""
    return messages_siblings_attach(messages_usage_attach(messages))


@dataclass(frozen=True)
class ReplyUsage:
    """What a reply cost over its calls: one, or more when it was continued."""

    prompt_tokens: int
    completion_tokens: int
    cost: Decimal
    estimated: bool  # some call's counts are chatweb's own
    priced: bool  # every call's model had a price


def messages_usage_attach(messages: list[Message]) -> list[Message]:
    """Set each reply's ``usage`` (a ``ReplyUsage``, or None before it has any), in one query, so
    rendering them (sync or async) runs none."""
    replies = [message.pk for message in messages if message.role == Message.Role.ASSISTANT]
    rows = (
        UsageRecord.objects.filter(message_id__in=replies)
        .values("message_id")
        .annotate(
            prompt=Sum("prompt_tokens"),
            completion=Sum("completion_tokens"),
            total_cost=Sum("cost"),
            estimated_calls=Count("pk", filter=Q(estimated=True)),
            unpriced_calls=Count("pk", filter=Q(priced=False)),
        )
        if replies
        else []
    )
    usage = {
        row["message_id"]: ReplyUsage(
            prompt_tokens=row["prompt"], completion_tokens=row["completion"], cost=row["total_cost"],
            estimated=row["estimated_calls"] > 0, priced=row["unpriced_calls"] == 0,
        )
        for row in rows
    }
    for message in messages:
        message.usage = usage.get(message.pk)
    return messages


def messages_siblings_attach(messages: list[Message]) -> list[Message]:
    """Set each message's place among its versions (the messages with its parent, oldest first):
    ``sibling_index`` (from 1), ``sibling_count``, and the ids of the ``sibling_prev`` and ``sibling_next``."""
    if not messages:
        return messages
    parents = {message.parent_id for message in messages}
    same_parent = Q(parent_id__in=[parent for parent in parents if parent is not None])
    if None in parents:
        same_parent |= Q(parent__isnull=True)
    versions: dict[int | None, list[int]] = {}
    rows = Message.objects.filter(same_parent, conversation_id=messages[0].conversation_id)
    for pk, parent_id in rows.order_by("created_at", "id").values_list("pk", "parent_id"):
        versions.setdefault(parent_id, []).append(pk)
    for message in messages:
        siblings = versions.get(message.parent_id) or [message.pk]
        index = siblings.index(message.pk) if message.pk in siblings else 0
        message.sibling_index, message.sibling_count = index + 1, len(siblings)
        message.sibling_prev = siblings[index - 1] if index > 0 else None
        message.sibling_next = siblings[index + 1] if index + 1 < len(siblings) else None
    return messages


def chat_model_list(*, user: AbstractBaseUser, api_key: ApiKey | None = None) -> QuerySet[ChatModel]:
    """The enabled models ``user`` may use (``services.access``), narrowed to ``api_key``'s list when given."""
    models = ChatModel.objects.filter(enabled=True, provider__enabled=True).select_related("provider")
    access = access_of(user=user)
    if not access.everything:
        models = models.filter(pk__in=access.ids)
    if api_key is not None and (own := key_model_ids(api_key=api_key)):
        models = models.filter(pk__in=own)
    return models


def chat_model_default(*, user: AbstractBaseUser) -> ChatModel | None:
    """The site's default model if ``user`` may use it, else the first they may."""
    models = chat_model_list(user=user)
    return models.filter(is_default=True).first() or models.first()


def api_key_list(*, user: AbstractBaseUser, spent_since: datetime | None = None) -> QuerySet[ApiKey]:
    """The user's keys with the models each is limited to; with ``spent_since``, each key's ``spent`` (USD)
    since then, one subquery per key."""
    keys = ApiKey.objects.filter(user=user).prefetch_related("allowed_models")
    if spent_since is None:
        return keys
    spent = (
        UsageRecord.objects.filter(api_key=OuterRef("pk"), created_at__gte=spent_since)
        .order_by().values("api_key").annotate(total=Sum("cost")).values("total")
    )
    cost = UsageRecord._meta.get_field("cost")
    return keys.annotate(spent=Coalesce(Subquery(spent, output_field=cost), Value(Decimal(0)), output_field=cost))


def usage_list(*, user: AbstractBaseUser) -> QuerySet[UsageRecord]:
    """The user's usage ledger: chat replies and /v1 calls."""
    return UsageRecord.objects.filter(user=user)


def user_theme(*, user: AbstractBaseUser) -> str:
    """The theme the user chose; ``system`` (follow the browser) for anyone who did not, or is signed out."""
    if not user.is_authenticated:
        return UserPreferences.Theme.SYSTEM
    chosen = UserPreferences.objects.filter(user=user).values_list("theme", flat=True).first()
    return chosen or UserPreferences.Theme.SYSTEM


def attachment_get(*, user: AbstractBaseUser, attachment_id: int) -> Attachment:
    """The file if ``user`` may read it (its owner, or an admin), else ``Attachment.DoesNotExist``."""
    rows = Attachment.objects.all()
    if not (user.is_superuser or user.has_perm("conversations.view_attachment")):
        rows = rows.filter(user=user)
    return rows.get(pk=attachment_id)


def attachments_draft(*, user: AbstractBaseUser, ids: list[str]) -> list[Attachment]:
    """The user's unsent uploads among ``ids`` (others ignored): the files a refused new chat still has attached."""
    wanted = [i for i in (row_id(str(raw)) for raw in ids) if i is not None]
    return list(Attachment.objects.filter(user=user, message__isnull=True, pk__in=wanted))


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
