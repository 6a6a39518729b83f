"""Password sign-in, which ``PASSWORD_LOGIN=0`` limits to the break-glass admin (single sign-on: ``sso.py``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import User


def password_login_allowed(username: str | None) -> bool:
    """Whether ``username`` may sign in with a password: anyone, unless password login is off."""
    return settings.PASSWORD_LOGIN or bool(settings.BREAK_GLASS_USERNAME and username == settings.BREAK_GLASS_USERNAME)


class PasswordBackend(ModelBackend):
    """Django's username and password, for the site's and the admin's sign-in pages.

    With ``PASSWORD_LOGIN=0`` only ``BREAK_GLASS_USERNAME`` signs in this way, and the
    sessions other users opened with a password before end at their next request.
    """

    def authenticate(
        self, request: Any, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> User | None:
        if not password_login_allowed(username or kwargs.get(get_user_model().USERNAME_FIELD)):
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)

    def get_user(self, user_id: int) -> User | None:
        user = super().get_user(user_id)
        return user if user is not None and password_login_allowed(user.get_username()) else None
