"""Reads, always scoped to the user asking: another user's id is simply not found."""

from datetime import datetime
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import F, OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce, NullIf
from django.http import Http404
from django.shortcuts import get_object_or_404

from .ids import row_id, row_id_valid
from .models import ApiKey, Attachment, ChatModel, Conversation, Message, UsageRecord, UserPreferences
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
    return latest[:limit][::-1], len(latest) > limit


def message_get(*, conversation: Conversation, message_id: int) -> Message:
    """A message of the conversation, or Http404."""
    return get_object_or_404(message_list(conversation=conversation), pk=message_id)


def message_list_of(*, conversation: Conversation, message_ids: list[int]) -> list[Message]:
    return list(message_list(conversation=conversation).filter(pk__in=message_ids))


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
