"""Reads of what a user may use and has set: models, keys, theme; scoped to the user asking."""

from datetime import datetime
from decimal import Decimal

from django.contrib.auth.models import User
from django.db.models import OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from conversations.accounts.access import access_of, key_model_ids
from conversations.models import (
    ApiKey,
    ChatModel,
    UsageRecord,
    UserPreferences,
)


def chat_model_list(*, user: User, api_key: ApiKey | None = None) -> QuerySet[ChatModel]:
    """The enabled models ``user`` may use (``accounts.access``), narrowed to ``api_key``'s list when given."""
    models = ChatModel.objects.filter(enabled=True, provider__enabled=True).select_related("provider")
    access = access_of(user=user)
    if not access.everything:
        models = models.filter(pk__in=access.ids)
    if api_key is not None and (own := key_model_ids(api_key=api_key)):
        models = models.filter(pk__in=own)
    return models


def chat_model_default(*, user: User) -> ChatModel | None:
    """The site's default model if ``user`` may use it, else the first they may."""
    models = chat_model_list(user=user)
    return models.filter(is_default=True).first() or models.first()


def api_key_list(*, user: User, spent_since: datetime | None = None) -> QuerySet[ApiKey]:
    """The user's keys with the models each is limited to; with ``spent_since``, each key's ``spent`` (USD)
    since then, one subquery per key."""
    keys = ApiKey.objects.filter(user=user).prefetch_related("allowed_models")
    if spent_since is None:
        return keys
    spent = (
        UsageRecord.objects.filter(api_key=OuterRef("pk"), created_at__gte=spent_since)
        .order_by()
        .values("api_key")
        .annotate(total=Sum("cost"))
        .values("total")
    )
    cost = UsageRecord._meta.get_field("cost")
    return keys.annotate(spent=Coalesce(Subquery(spent, output_field=cost), Value(Decimal(0)), output_field=cost))


def user_theme(*, user: User) -> str:
    """The theme the user chose; ``system`` (follow the browser) for anyone who did not, or is signed out."""
    if not user.is_authenticated:
        return UserPreferences.Theme.SYSTEM
    chosen = UserPreferences.objects.filter(user=user).values_list("theme", flat=True).first()
    return chosen or UserPreferences.Theme.SYSTEM
