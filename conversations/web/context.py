"""Context every page gets."""

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from conversations.accounts.selectors import user_theme
from conversations.models import UserPreferences


def theme(request: HttpRequest) -> dict[str, SimpleLazyObject]:
    """The user's theme, read only by pages that render it, so the first paint has the right colours.
    Pages without sign-in (sign-in itself, a shared conversation) follow the browser."""
    return {
        "theme": SimpleLazyObject(
            lambda: user_theme(user=request.user) if request.user.is_authenticated else UserPreferences.Theme.SYSTEM
        )
    }
