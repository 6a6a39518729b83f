"""Accounts: the first one administers the site; later ones need open sign-ups. And what each user prefers."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from ..forms import SignupForm
from ..models import SiteSettings, UserPreferences


def signup_allowed() -> bool:
    return not get_user_model().objects.exists() or SiteSettings.load().signups_open


@transaction.atomic
def user_signup(*, form: SignupForm) -> AbstractBaseUser:
    """Create the account of a valid sign-up form; the very first becomes the admin."""
    first = not get_user_model().objects.select_for_update().exists()
    user = form.save(commit=False)
    user.is_staff = user.is_superuser = first
    user.save()
    return user


def preferences_theme_set(*, user: AbstractBaseUser, theme: str) -> UserPreferences:
    """Keep the user's theme (system, light or dark) for every page on every device."""
    if theme not in UserPreferences.Theme.values:
        raise ValidationError(f"Unknown theme {theme!r}.")
    preferences, _ = UserPreferences.objects.update_or_create(user=user, defaults={"theme": theme})
    return preferences
