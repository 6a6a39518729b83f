"""Reads of conversations, their messages and files, always scoped to the user asking: another user's id is simply not found."""

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol, cast

from django.contrib.auth.models import User
from django.db import connection
from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce, NullIf

from conversations.core.errors import NotFound
from conversations.core.ids import row_id, row_id_valid
from conversations.models import (
    Attachment,
    ChatModel,
    Conversation,
    Message,
    UsageRecord,
)


def conversation_list(*, user: User) -> QuerySet[Conversation]:
    return Conversation.objects.filter(user=user).order_by("-updated_at", "-id")


def conversation_get(*, user: User, conversation_id: int) -> Conversation:
    """The user's conversation, or ``NotFound``."""
    found = (
        conversation_list(user=user).select_related("model").filter(pk=conversation_id).first()
        if row_id_valid(conversation_id)
        else None
    )
    if found is None:
        raise NotFound("No such conversation.")
    return found


async def conversation_afind(*, user: User, conversation_id: int) -> Conversation | None:
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
    """A message of the conversation, or ``NotFound``."""
    found = message_list(conversation=conversation).filter(pk=message_id).first() if row_id_valid(message_id) else None
    if found is None:
        raise NotFound("No such message.")
    return messages_for_display([found])[0]


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


class _WithUsage(Protocol):
    """A message with ``usage`` set by ``messages_usage_attach``, which its templates read."""

    usage: ReplyUsage | None


class _WithSiblings(Protocol):
    """A message with its place among its versions set by ``messages_siblings_attach``, which its templates read."""

    sibling_index: int
    sibling_count: int
    sibling_prev: int | None
    sibling_next: int | None


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
            prompt_tokens=row["prompt"],
            completion_tokens=row["completion"],
            cost=row["total_cost"],
            estimated=row["estimated_calls"] > 0,
            priced=row["unpriced_calls"] == 0,
        )
        for row in rows
    }
    for message in messages:
        # Message (models/) declares no ``usage``: it is set here, for the templates, and typed by _WithUsage.
        cast(_WithUsage, message).usage = usage.get(message.pk)
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
        # Message (models/) declares none of these: they are set here, for the templates, typed by _WithSiblings.
        placed = cast(_WithSiblings, message)
        placed.sibling_index, placed.sibling_count = index + 1, len(siblings)
        placed.sibling_prev = siblings[index - 1] if index > 0 else None
        placed.sibling_next = siblings[index + 1] if index + 1 < len(siblings) else None
    return messages


def attachment_get(*, user: User, attachment_id: int) -> Attachment:
    """The file if ``user`` may read it (its owner, or an admin), else ``NotFound``."""
    rows = Attachment.objects.all()
    if not (user.is_superuser or user.has_perm("conversations.view_attachment")):
        rows = rows.filter(user=user)
    found = rows.filter(pk=attachment_id).first() if row_id_valid(attachment_id) else None
    if found is None:
        raise NotFound("No such file.")
    return found


def attachments_draft(*, user: User, ids: list[str]) -> list[Attachment]:
    """The user's unsent uploads among ``ids`` (others ignored): the files a refused new chat still has attached."""
    wanted = [i for i in (row_id(str(raw)) for raw in ids) if i is not None]
    return list(Attachment.objects.filter(user=user, message__isnull=True, pk__in=wanted))
