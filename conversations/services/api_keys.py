"""API keys for /v1: created with a name, shown once, stored hashed, revocable."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.utils import timezone

from ..ids import row_id_valid
from ..models import ApiKey
from .rowcache import rowcache_get, rowcache_set

KEY_PREFIX = "sk-cw-"
# last_used_at is a hint for people, not an audit log: refresh it at most this often.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def api_key_create(*, user: AbstractBaseUser, name: str) -> tuple[ApiKey, str]:
    """Create a key; returns it with the secret, which is never available again."""
    name = " ".join(name.split())[:100]
    if not name:
        raise ValidationError("Give the key a name, such as the app that will use it.")
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(user=user, name=name, prefix=raw[:12], hashed=_hash(raw))
    return key, raw


def api_key_revoke(*, user: AbstractBaseUser, key_id: int) -> ApiKey:
    """Revoke the user's key; ApiKey.DoesNotExist when they have no such key."""
    if not row_id_valid(key_id):
        raise ApiKey.DoesNotExist
    key = ApiKey.objects.get(pk=key_id, user=user)
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    return key


async def api_key_authenticate(*, raw: str) -> ApiKey | None:
    """The active key matching ``raw`` (with its user), or None; known keys come from the row cache."""
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
        rowcache_set(("api-key", hashed), key)
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        key.last_used_at = now
        await ApiKey.objects.filter(pk=key.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
        ).aupdate(last_used_at=now)
    return key
