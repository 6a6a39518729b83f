"""Single sign-on through an OpenID Connect provider: where its endpoints are, and who a signed-in person is.

The code flow itself (state, nonce, PKCE, the token exchange, checking the ID token) is
mozilla-django-oidc's, wired in ``conversations.accounts.auth`` and the SSO views; here are the
provider's discovery document and the account a set of verified claims signs in.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any

import httpx
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, User
from django.db import transaction
from django.utils import timezone

from conversations.core.errors import SsoFailed
from conversations.models import SsoIdentity

logger = logging.getLogger(__name__)

DISCOVERY_TTL = 3600.0
# mozilla-django-oidc's setting names for the endpoints, and where the discovery document has them.
ENDPOINTS = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
    "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
}
GROUPS_MAX = 200  # a claim listing more is cut here: each name becomes a group
USERNAME_UNSAFE = re.compile(r"[^\w.@+-]")

_discovered: dict[str, tuple[float, dict[str, Any]]] = {}  # issuer -> (when, document)
_discovering = threading.Lock()


def sso_discovery(*, issuer: str) -> dict[str, Any]:
    """The provider's discovery document, fetched once an hour per process; its ``issuer`` must be ``issuer``."""
    cached = _discovered.get(issuer)
    if cached is not None and time.monotonic() - cached[0] < DISCOVERY_TTL:
        return cached[1]
    with _discovering:
        try:
            response = httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=settings.OIDC_TIMEOUT)
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise SsoFailed(f"The identity provider's discovery document could not be read: {exc}") from exc
        if not isinstance(document, dict) or document.get("issuer") != issuer:
            raise SsoFailed("The identity provider's discovery document names another issuer.")
        _discovered[issuer] = (time.monotonic(), document)
        return document


def sso_setting(name: str, *default: Any) -> Any:
    """A mozilla-django-oidc setting: its provider endpoints from discovery, the rest from Django's settings."""
    if name in ENDPOINTS:
        return sso_discovery(issuer=settings.OIDC_ISSUER).get(ENDPOINTS[name])
    return getattr(settings, name, *default)


@transaction.atomic
def sso_user_sync(*, issuer: str, claims: dict[str, Any]) -> User:
    """The account of the provider's user ``claims["sub"]``, created at its first sign-in, kept up to date.

    Linked by issuer and subject only: an existing account with the same email or
    username is never taken over (the new one gets a free username beside it). Name and
    email follow the claims; with ``OIDC_GROUPS_CLAIM`` present in them, the user's
    groups become exactly the groups it names (created when missing).
    """
    subject = str(claims["sub"])
    identity = (
        SsoIdentity.objects.select_for_update().select_related("user").filter(issuer=issuer, subject=subject).first()
    )
    if identity is None:
        user = get_user_model()(username=_free_username(claims))
        user.set_unusable_password()
        user.save()
        identity = SsoIdentity.objects.create(user=user, issuer=issuer, subject=subject)
    user = identity.user
    user.email = str(claims.get("email") or user.email)[:254]
    user.first_name = str(claims.get("given_name") or user.first_name)[:150]
    user.last_name = str(claims.get("family_name") or user.last_name)[:150]
    user.save(update_fields=["email", "first_name", "last_name"])
    identity.last_login_at = timezone.now()
    identity.save(update_fields=["last_login_at"])
    _groups_sync(user, claims)
    return user


def _free_username(claims: dict[str, Any]) -> str:
    """The provider's preferred username (else the email's local part) made safe, with a suffix if taken."""
    wanted = str(claims.get("preferred_username") or str(claims.get("email") or "").partition("@")[0] or "user")
    base = USERNAME_UNSAFE.sub("-", wanted).strip("-")[:140] or "user"
    taken = set(get_user_model().objects.filter(username__startswith=base).values_list("username", flat=True))
    if base not in taken:
        return base
    suffix = 2
    while f"{base}-{suffix}" in taken:
        suffix += 1
    return f"{base}-{suffix}"


def _groups_sync(user: User, claims: dict[str, Any]) -> None:
    """Put the user in exactly the groups the groups claim names; no claim configured or sent: leave them."""
    claim = settings.OIDC_GROUPS_CLAIM
    if not claim or claim not in claims:
        return
    names = claims[claim]
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list):
        logger.warning("The groups claim is not a list; the user's groups are left as they were.")
        return
    wanted = sorted({str(name).strip()[:150] for name in names if str(name).strip()})[:GROUPS_MAX]
    user.groups.set([Group.objects.get_or_create(name=name)[0] for name in wanted])
