"""API keys for /v1: created with a name and optional scopes, shown once, stored hashed, revocable.

Scopes (``models.ApiKey``): an expiry, a list of models within the user's own access,
a monthly budget and requests-per-minute of the key's own (``ledger.usage`` checks
them with the user's), and read-only.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from conversations.accounts.access import access_allows
from conversations.core.errors import InvalidInput, KeyExpired, NotFound, ScopeMissing
from conversations.core.ids import row_id_valid
from conversations.core.rowcache import rowcache_get, rowcache_set
from conversations.models import ApiKey, ChatModel

KEY_PREFIX = "sk-cw-"
# last_used_at is a hint for people, not an audit log: refresh it at most this often.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


@transaction.atomic
def api_key_create(
    *,
    user: User,
    name: str,
    expires_at: datetime | None = None,
    models: Iterable[ChatModel] = (),
    monthly_budget: Decimal | None = None,
    requests_per_minute: int | None = None,
    read_only: bool = False,
) -> tuple[ApiKey, str]:
    """Create a key with its scopes; returns it with the secret, which is never available again."""
    name = " ".join(name.split())[:100]
    if not name:
        raise InvalidInput("Give the key a name, such as the app that will use it.")
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput("The expiry is in the past: pick a later date, or none.")
    if monthly_budget is not None and monthly_budget < 0:
        raise InvalidInput("A budget cannot be negative.")
    if requests_per_minute is not None and requests_per_minute < 1:
        raise InvalidInput("Requests per minute must be at least 1.")
    models = list(models)
    for model in models:
        if not access_allows(user=user, model=model):
            raise InvalidInput(f"The model “{model.label}” is not available to you.")
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        user=user,
        name=name,
        prefix=raw[:12],
        hashed=_hash(raw),
        expires_at=expires_at,
        monthly_budget=monthly_budget,
        requests_per_minute=requests_per_minute,
        read_only=read_only,
    )
    key.allowed_models.set(models)
    return key, raw


def api_key_require_write(*, key: ApiKey, method: str) -> None:
    """``ScopeMissing`` for a read-only key asked to create or change something (OpenAI's wording)."""
    if key.read_only:
        raise ScopeMissing(
            f"You have insufficient permissions for this operation. Missing scopes: write ({method} is refused "
            "to a read-only key). Use a key without the read-only scope."
        )


def api_key_revoke(*, user: User, key_id: int) -> ApiKey:
    """Revoke the user's key; ``NotFound`` when they have no such key."""
    key = ApiKey.objects.filter(pk=key_id, user=user).first() if row_id_valid(key_id) else None
    if key is None:
        raise NotFound("No such key.")
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    return key


async def api_key_authenticate(*, raw: str) -> ApiKey | None:
    """The active key matching ``raw`` (with its user and its list of models), or None; ``KeyExpired``
    past its expiry. Known keys come from the row cache."""
    if not raw.startswith(KEY_PREFIX):
        return None
    hashed = _hash(raw)
    key = rowcache_get(("api-key", hashed))
    if key is None:
        key = await (
            ApiKey.objects.select_related("user")
            .filter(hashed=hashed, revoked_at__isnull=True, user__is_active=True)
            .afirst()
        )
        if key is None:
            return None
        key.model_ids = frozenset([pk async for pk in key.allowed_models.values_list("pk", flat=True)])
        rowcache_set(("api-key", hashed), key)
    now = timezone.now()
    if key.expires_at is not None and key.expires_at <= now:
        raise KeyExpired(
            f"This API key ({key.prefix}…) expired on {key.expires_at:%Y-%m-%d %H:%M} UTC. Create a new key."
        )
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        key.last_used_at = now
        await (
            ApiKey.objects.filter(pk=key.pk)
            .filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION))
            .aupdate(last_used_at=now)
        )
    return key
