"""Presets and a user's defaults for new chats."""

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import (
    HttpResponse,
)
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from conversations.accounts.selectors import (
    chat_model_list,
)
from conversations.chat.settings import (
    preferences_chat_set,
    preferences_get,
    preset_delete,
    preset_get,
    preset_list,
    preset_save,
)
from conversations.core.errors import InvalidInput
from conversations.core.requests import SignedInRequest


def _presets_page(request: SignedInRequest, *, status: int = 200, **context: Any) -> HttpResponse:
    preferences = preferences_get(user=request.user)
    context = {
        "presets": preset_list(user=request.user),
        "preferences": preferences,
        "chat_models": chat_model_list(user=request.user),
        "new_preset": {},
        **context,
    }
    return render(request, "conversations/presets.html", context, status=status)


@login_required
def presets(request: SignedInRequest) -> HttpResponse:
    """The user's presets and the site's, and their defaults for new chats; a POST creates a preset."""
    if request.method != "POST":
        return _presets_page(request)
    try:
        preset_save(user=request.user, data=request.POST)
    except InvalidInput as exc:
        return _presets_page(request, new_preset=request.POST, error=exc, error_form="new", status=400)
    return redirect("presets")


@login_required
@require_POST
def preset_edit(request: SignedInRequest, preset_id: int) -> HttpResponse:
    """Change one of the user's presets, or with ``delete`` in the form, delete it."""
    preset = preset_get(user=request.user, preset_id=preset_id, own=True)
    if "delete" in request.POST:
        preset_delete(preset=preset)
        return redirect("presets")
    try:
        preset_save(user=request.user, data=request.POST, preset=preset)
    except InvalidInput as exc:
        return _presets_page(
            request, editing=preset.pk, edited=request.POST, error=exc, error_form=str(preset.pk), status=400
        )
    return redirect("presets")


@login_required
@require_POST
def chat_defaults_set(request: SignedInRequest) -> HttpResponse:
    """Keep the user's own system prompt and default preset for new chats."""
    try:
        preferences_chat_set(
            user=request.user,
            system_prompt=request.POST.get("system_prompt", ""),
            default_preset_id=request.POST.get("default_preset", ""),
        )
    except InvalidInput as exc:
        typed = request.POST.get("system_prompt", "")
        return _presets_page(request, defaults_error=exc, typed_prompt=typed, status=400)
    return redirect("presets")
