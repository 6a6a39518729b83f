"""Signing in and out, signing up, the password, the theme, and API keys."""

from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth import get_user_model, login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import (
    HttpRequest,
    HttpResponse,
)
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from conversations.accounts.api_keys import api_key_create, api_key_revoke
from conversations.accounts.forms import ApiKeyForm, PasswordForm, SignupForm
from conversations.accounts.selectors import (
    api_key_list,
)
from conversations.accounts.users import (
    account_sockets_check,
    preferences_theme_set,
    signup_allowed,
    user_signup,
)
from conversations.core.errors import InvalidInput
from conversations.core.requests import SignedInRequest
from conversations.ledger.limits import month_start
from conversations.web.shell import TEMPLATE

PASSWORD_BACKEND = "conversations.accounts.auth.PasswordBackend"


class LogoutView(auth_views.LogoutView):
    """Django's sign-out; the sockets this session opened close too."""

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        user_id = request.user.pk
        response = super().post(request, *args, **kwargs)
        if user_id is not None:
            async_to_sync(account_sockets_check)(user_id=user_id)
        return response


class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's password change: this browser stays signed in (under a new session key), the user's other
    sessions end, and every open socket of the user closes (a reloaded page opens one with the new key)."""

    request: SignedInRequest  # Django's view is behind login_required
    template_name = "registration/password_change.html"
    form_class = PasswordForm
    success_url = reverse_lazy("password_changed")

    def form_valid(self, form):
        response = super().form_valid(form)
        async_to_sync(account_sockets_check)(user_id=self.request.user.pk)
        return response


@login_required
def password_changed(request: SignedInRequest) -> HttpResponse:
    return render(request, "registration/password_change.html", {"done": True})


class LoginView(auth_views.LoginView):
    """Django's sign-in page, with single sign-on's button when it is on; without it, the very first visitor
    is sent to create the admin account (with it, that account can be created from the page's link)."""

    def get(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if signup_allowed() and not settings.OIDC_ISSUER and not get_user_model().objects.exists():
            return redirect("signup")
        return super().get(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        return super().get_context_data(
            **kwargs,
            signups_open=signup_allowed(),
            sso_name=settings.OIDC_PROVIDER_NAME if settings.OIDC_ISSUER else "",
            password_login=settings.PASSWORD_LOGIN,
        )


def signup(request: HttpRequest) -> HttpResponse:
    if not signup_allowed():
        return render(request, "registration/signup_closed.html", status=403)
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        login(request, user_signup(form=form), backend=PASSWORD_BACKEND)
        return redirect("home")
    first_user = not get_user_model().objects.exists()
    return render(request, "registration/signup.html", {"form": form, "first_user": first_user})


@login_required
@require_POST
def theme_set(request: SignedInRequest) -> HttpResponse:
    """Keep the theme the user picked; htmx gets the switch back, a plain form the page it came from."""
    try:
        preferences = preferences_theme_set(user=request.user, theme=request.POST.get("theme", ""))
    except InvalidInput as exc:
        return HttpResponse(exc.message, status=400)
    if request.htmx:
        return render(request, f"{TEMPLATE}#theme-switch", {"theme": preferences.theme})
    back = request.POST.get("next", "")
    safe = url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}, require_https=request.is_secure())
    return redirect(back if safe else "home")


def _keys_page(request: SignedInRequest, form: ApiKeyForm, **context: Any) -> HttpResponse:
    base_url = request.build_absolute_uri("/v1")
    keys = api_key_list(user=request.user, spent_since=month_start(timezone.now()))
    return render(
        request,
        "conversations/keys.html",
        {"keys": keys, "base_url": base_url, "form": form, **context},
        status=400 if form.errors else 200,
    )


NEW_KEY_SESSION = "chatweb_new_api_key"


@never_cache
@login_required
def api_keys(request: SignedInRequest) -> HttpResponse:
    """List keys; a POST creates one (with its scopes) and redirects to the list, which shows its secret this once.

    The redirect keeps a reload from creating a second key; the secret waits in the session
    for that one page, which no cache keeps (``Cache-Control: no-store``). A form with bad
    values comes back with a message at each and what was typed kept.
    """
    if request.method != "POST":
        new_key = request.session.pop(NEW_KEY_SESSION, None) or {}
        form = ApiKeyForm(user=request.user)
        return _keys_page(request, form, new_key=new_key.get("raw"), new_key_name=new_key.get("name"))
    form = ApiKeyForm(request.POST, user=request.user)
    if not form.is_valid():
        return _keys_page(request, form)
    data = form.cleaned_data
    try:
        key, raw = api_key_create(
            user=request.user,
            name=data["name"],
            expires_at=form.expires_at,
            models=data["models"],
            monthly_budget=data["monthly_budget"],
            requests_per_minute=data["requests_per_minute"],
            read_only=data["read_only"],
        )
    except InvalidInput as exc:
        form.add_error(None, exc.message)
        return _keys_page(request, form)
    request.session[NEW_KEY_SESSION] = {"raw": raw, "name": key.name}
    return redirect("api_keys")


@login_required
@require_POST
def api_key_revoke_view(request: SignedInRequest, key_id: int) -> HttpResponse:
    api_key_revoke(user=request.user, key_id=key_id)
    return redirect("api_keys")
