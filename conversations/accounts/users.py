"""Accounts: the first one administers the site; later ones need open sign-ups. Signed-in sockets end with
their session. And what each user prefers."""

from __future__ import annotations

from datetime import datetime
from importlib import import_module

from django.conf import settings
from django.contrib import auth
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from conversations.accounts.forms import SignupForm
from conversations.core.errors import InvalidInput
from conversations.core.events import account_check, account_group, event_publish
from conversations.models import SiteSettings, UserPreferences


def signup_allowed() -> bool:
    """Whether a visitor may create a password account: never with password login off (single sign-on
    creates accounts then); otherwise for the very first account, and later while an admin keeps sign-ups open."""
    if not settings.PASSWORD_LOGIN:
        return False
    return not get_user_model().objects.exists() or SiteSettings.load().signups_open


@transaction.atomic
def user_signup(*, form: SignupForm) -> User:
    """Create the account of a valid sign-up form; the very first becomes the admin."""
    first = not get_user_model().objects.select_for_update().exists()
    user = form.save(commit=False)
    user.is_staff = user.is_superuser = first
    user.save()
    return user


def login_client_address(request: HttpRequest) -> str | None:
    """The address a sign-in comes from, for throttling (django-axes' ``AXES_CLIENT_IP_CALLABLE``).

    Behind the reverse proxy (``BEHIND_PROXY``) it is the last X-Forwarded-For entry, the one
    the proxy added; earlier entries come from the client and prove nothing. Otherwise the
    connection's own address: an X-Forwarded-For sent straight to chatweb is ignored.
    """
    if settings.BEHIND_PROXY and (forwarded := request.META.get("HTTP_X_FORWARDED_FOR", "").strip()):
        return str(forwarded).rsplit(",", 1)[-1].strip()
    address: str | None = request.META.get("REMOTE_ADDR")
    return address


async def account_sockets_check(*, user_id: int) -> None:
    """Have each of the user's open sockets check that its session still signs them in, closing if not.

    Called after a sign-out, a password change, a deactivation or a deletion.
    """
    await event_publish(account_group(user_id=user_id), account_check())


def session_expiry(*, session_key: str | None, user_id: int) -> datetime | None:
    """When the session expires, or None when it no longer signs in that user.

    Django's own check, as for a page: the session exists and has not expired, the user
    exists and is active, and the password is the one the session signed in with.
    Sessions live in the database (Django's default engine), which holds their expiry.
    """
    if not session_key:
        return None
    expiry = (
        Session.objects.filter(session_key=session_key, expire_date__gt=timezone.now())
        .values_list("expire_date", flat=True)
        .first()
    )
    if expiry is None:
        return None
    request = HttpRequest()
    request.session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    return expiry if auth.get_user(request).pk == user_id else None


def preferences_theme_set(*, user: User, theme: str) -> UserPreferences:
    """Keep the user's theme (system, light or dark) for every page on every device."""
    if theme not in UserPreferences.Theme.values:
        raise InvalidInput(f"Unknown theme {theme!r}.")
    preferences, _ = UserPreferences.objects.update_or_create(user=user, defaults={"theme": theme})
    return preferences
