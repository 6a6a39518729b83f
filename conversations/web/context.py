"""Context every page gets."""

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from conversations.accounts.selectors import user_theme


def theme(request: HttpRequest) -> dict:
    """The user's theme, read only by pages that render it, so the first paint has the right colours."""
    return {"theme": SimpleLazyObject(lambda: user_theme(user=request.user))}
