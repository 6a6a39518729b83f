"""Which models a user, or one of their API keys, may use.

A user's access is the union of what their groups allow (a group without a policy, or
whose policy says "all models", allows every enabled model) and the models granted to
them directly. A user in no group may use every model, unless the site settings say
that such users get only their direct grants. A key may narrow its user's access to a
list of its own; it never widens it. A model outside someone's access answers exactly
as a model that does not exist: nobody learns what others may use.

The answers are cached per process (``core.rowcache``) like limits and keys, so a
/v1 call checks access without a trip to the database.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import Group, User

from conversations.core.errors import ModelUnavailable
from conversations.core.rowcache import rowcache_get, rowcache_load
from conversations.models import (
    ApiKey,
    ChatModel,
    GroupPolicy,
    ModelGrant,
    SiteSettings,
)


@dataclass(frozen=True)
class ModelAccess:
    """Every enabled model (``everything``), or only the chat models whose ids are in ``ids``."""

    everything: bool
    ids: frozenset[int] = frozenset()

    def allows(self, model_id: int) -> bool:
        return self.everything or model_id in self.ids


def access_of(*, user: User) -> ModelAccess:
    """The user's access to models (cached for ``ROW_CACHE_SECONDS``)."""
    return rowcache_load(("access", user.pk), lambda: _access_load(user.pk))


def access_cached(*, user_id: int) -> ModelAccess | None:
    """The user's access if this process has it cached, else None (the caller loads it on the database thread)."""
    return rowcache_get(("access", user_id))


def _access_load(user_id: int) -> ModelAccess:
    groups = list(Group.objects.filter(user=user_id).values_list("pk", flat=True))
    if not groups:
        if SiteSettings.load().ungrouped_all_models:
            return ModelAccess(everything=True)
    else:
        policies = {p.group_id: p for p in GroupPolicy.objects.filter(group_id__in=groups)}
        if any(group not in policies or policies[group].all_models for group in groups):
            return ModelAccess(everything=True)
    granted = set(ModelGrant.objects.filter(user=user_id).values_list("model_id", flat=True))
    if groups:
        through = GroupPolicy.allowed_models.through
        granted |= set(through.objects.filter(grouppolicy__group_id__in=groups).values_list("chatmodel_id", flat=True))
    return ModelAccess(everything=False, ids=frozenset(granted))


def key_model_ids(*, api_key: ApiKey) -> frozenset[int]:
    """The models a key was limited to at creation; empty: no list of its own. Read with the key when
    it authenticates (``api_key_authenticate``), so checking costs no query."""
    if not hasattr(api_key, "model_ids"):
        api_key.model_ids = frozenset(api_key.allowed_models.values_list("pk", flat=True))
    return api_key.model_ids


def access_allows(
    *, user: User, model: ChatModel, api_key: ApiKey | None = None, access: ModelAccess | None = None
) -> bool:
    """Whether ``user`` (through ``api_key``, when given) may use ``model``."""
    access = access or access_of(user=user)
    if not access.allows(model.pk):
        return False
    own = key_model_ids(api_key=api_key) if api_key is not None else frozenset()
    return not own or model.pk in own


def access_require(
    *,
    user: User,
    model: ChatModel,
    name: str,
    api_key: ApiKey | None = None,
    access: ModelAccess | None = None,
) -> ChatModel:
    """``model`` if ``user`` may use it, else ``ModelUnavailable`` worded as for a model that does not exist."""
    if not access_allows(user=user, model=model, api_key=api_key, access=access):
        raise model_unavailable(name)
    return model


def model_unavailable(name: str) -> ModelUnavailable:
    """OpenAI's words for a model that does not exist or that the caller may not see."""
    return ModelUnavailable(f"The model `{name}` does not exist or you do not have access to it.", name=name)
