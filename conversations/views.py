"""Pages of the chat UI. Sending and streaming happen over the websocket (consumers.py)."""

from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.contrib.auth import get_user_model, login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.messages import get_messages
from django.core.exceptions import ValidationError
from django.core.handlers.asgi import ASGIRequest
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from .forms import PasswordForm, SignupForm
from .library_views import sidebar_context
from .ids import row_id
from .models import ApiKey, Conversation, Message
from .selectors import (
    api_key_list,
    chat_model_default,
    chat_model_list,
    conversation_get,
    message_get,
    message_page,
    usage_list,
)
from .services import chat, usage_report
from .services.accounts import account_sockets_check, preferences_theme_set, signup_allowed, user_signup
from .services.api_keys import api_key_create, api_key_revoke
from .services.health import local_model_status, readiness_check

TEMPLATE = "conversations/chat.html"


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

    template_name = "registration/password_change.html"
    form_class = PasswordForm
    success_url = reverse_lazy("password_changed")

    def form_valid(self, form):
        response = super().form_valid(form)
        async_to_sync(account_sockets_check)(user_id=self.request.user.pk)
        return response


@login_required
def password_changed(request: HttpRequest) -> HttpResponse:
    return render(request, "registration/password_change.html", {"done": True})


class LoginView(auth_views.LoginView):
    """Django's sign-in page; sends the very first visitor to create the admin account."""

    def get(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not get_user_model().objects.exists():
            return redirect("signup")
        return super().get(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        return super().get_context_data(**kwargs, signups_open=signup_allowed())


def signup(request: HttpRequest) -> HttpResponse:
    if not signup_allowed():
        return render(request, "registration/signup_closed.html", status=403)
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        login(request, user_signup(form=form), backend="django.contrib.auth.backends.ModelBackend")
        return redirect("home")
    first_user = not get_user_model().objects.exists()
    return render(request, "registration/signup.html", {"form": form, "first_user": first_user})


def _page(
    request: HttpRequest,
    *,
    conversation: Conversation | None = None,
    notice: str = "",
    draft: str = "",
    status: int = 200,
) -> HttpResponse:
    messages, has_earlier = message_page(conversation=conversation) if conversation else ([], False)
    selected = conversation.model_id if conversation else None
    if selected is None:
        default = chat_model_default()
        selected = default.pk if default else None
    return render(
        request,
        TEMPLATE,
        {
            "conversation": conversation,
            "conversation_usage": usage_report.conversation_totals(conversation=conversation) if conversation else None,
            **sidebar_context(user=request.user, conversation=conversation),
            "messages_flash": get_messages(request),
            "messages": messages,
            "has_earlier": has_earlier,
            "streaming_ids": [m.pk for m in messages if m.status == Message.Status.STREAMING],
            "chat_models": chat_model_list(),
            "selected_model_id": selected,
            "notice": notice,
            "draft": draft,
        },
        status=status,
    )


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return _page(request)


@login_required
def conversation_detail(request: HttpRequest, conversation_id: int) -> HttpResponse:
    return _page(request, conversation=conversation_get(user=request.user, conversation_id=conversation_id))


@login_required
def conversation_earlier_messages(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """The page of messages before ``?before=<id>``, loaded as the user scrolls up."""
    conversation = conversation_get(user=request.user, conversation_id=conversation_id)
    before = row_id(request.GET.get("before", ""))
    if before is None:
        return HttpResponse("?before=<message id> is required.", status=400)
    messages, has_earlier = message_page(conversation=conversation, before_id=before)
    context = {"conversation": conversation, "messages": messages, "has_earlier": has_earlier}
    return render(request, f"{TEMPLATE}#earlier-messages", context)


@login_required
def message_detail(request: HttpRequest, conversation_id: int, message_id: int) -> HttpResponse:
    """One message whole: a reply too long for one websocket frame is fetched here by the tab."""
    conversation = conversation_get(user=request.user, conversation_id=conversation_id)
    message = message_get(conversation=conversation, message_id=message_id)
    return render(request, f"{TEMPLATE}#message", {"message": message})


@require_POST
async def conversation_new(request: HttpRequest) -> HttpResponse:
    """Start a conversation with its first message; the reply streams on its page."""
    user = await request.auser()
    if not user.is_authenticated:
        return redirect("login")
    content = request.POST.get("message", "")
    try:
        conversation = await chat.chat_start(
            user=user, content=content, model_name=request.POST.get("model") or None
        )
    except ValidationError as exc:
        return await sync_to_async(_page)(request, notice=" ".join(exc.messages), draft=content, status=400)
    return redirect("conversation_detail", conversation_id=conversation.pk)


@login_required
@require_POST
def conversation_rename(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = conversation_get(user=request.user, conversation_id=conversation_id)
    context = {"conversation": conversation, "oob_link": True}
    try:
        chat.conversation_rename(conversation=conversation, title=request.POST.get("title", ""))
    except ValidationError as exc:
        context["title_error"] = " ".join(exc.messages)
        conversation.refresh_from_db()
    if request.headers.get("HX-Request"):
        return render(request, f"{TEMPLATE}#title-form", context)
    return redirect("conversation_detail", conversation_id=conversation.pk)


@login_required
@require_POST
def conversation_delete(request: HttpRequest, conversation_id: int) -> HttpResponse:
    chat.conversation_delete(conversation=conversation_get(user=request.user, conversation_id=conversation_id))
    return redirect("home")


@login_required
@require_POST
def theme_set(request: HttpRequest) -> HttpResponse:
    """Keep the theme the user picked; htmx gets the switch back, a plain form the page it came from."""
    try:
        preferences = preferences_theme_set(user=request.user, theme=request.POST.get("theme", ""))
    except ValidationError as exc:
        return HttpResponse(" ".join(exc.messages), status=400)
    if request.headers.get("HX-Request"):
        return render(request, f"{TEMPLATE}#theme-switch", {"theme": preferences.theme})
    back = request.POST.get("next", "")
    safe = url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}, require_https=request.is_secure())
    return redirect(back if safe else "home")


def _keys_page(request: HttpRequest, **context: Any) -> HttpResponse:
    base_url = request.build_absolute_uri("/v1")
    return render(
        request, "conversations/keys.html", {"keys": api_key_list(user=request.user), "base_url": base_url, **context}
    )


NEW_KEY_SESSION = "chatweb_new_api_key"


@never_cache
@login_required
def api_keys(request: HttpRequest) -> HttpResponse:
    """List keys; a POST creates one and redirects to the list, which shows its secret this once.

    The redirect keeps a reload from creating a second key; the secret waits in the session
    for that one page, which no cache keeps (``Cache-Control: no-store``).
    """
    if request.method != "POST":
        new_key = request.session.pop(NEW_KEY_SESSION, None) or {}
        return _keys_page(request, new_key=new_key.get("raw"), new_key_name=new_key.get("name"))
    try:
        key, raw = api_key_create(user=request.user, name=request.POST.get("name", ""))
    except ValidationError as exc:
        return _keys_page(request, error=" ".join(exc.messages))
    request.session[NEW_KEY_SESSION] = {"raw": raw, "name": key.name}
    return redirect("api_keys")


@login_required
@require_POST
def api_key_revoke_view(request: HttpRequest, key_id: int) -> HttpResponse:
    try:
        api_key_revoke(user=request.user, key_id=key_id)
    except ApiKey.DoesNotExist:
        raise Http404("No such key.") from None
    return redirect("api_keys")


@login_required
def usage(request: HttpRequest) -> HttpResponse:
    """The user's usage and cost: today, this month, by model, the last 30 days per day."""
    summary = usage_report.usage_summary(queryset=usage_list(user=request.user), user=request.user, now=timezone.now())
    return render(request, "conversations/usage.html", {"usage": summary, "chart": summary.chart})


@login_required
def usage_export(request: HttpRequest) -> StreamingHttpResponse:
    """Every ledger row of the user as CSV, streamed (with the async ORM under ASGI)."""
    ledger = usage_list(user=request.user)
    lines = usage_report.acsv_lines(ledger) if isinstance(request, ASGIRequest) else usage_report.csv_lines(ledger)
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d")
    response["Content-Disposition"] = f'attachment; filename="chatweb-usage-{stamp}.csv"'
    return response


def healthz(request: HttpRequest) -> JsonResponse:
    """The process is alive and serving."""
    return JsonResponse({"status": "ok"})


async def readyz(request: HttpRequest) -> JsonResponse:
    """The database and the channel layer answer; 503 otherwise.

    The local model's state is reported too, but does not decide readiness: every page
    and every other provider work while it restarts.
    """
    checks = await readiness_check()
    ready = all(result == "ok" for result in checks.values())
    local_model = await sync_to_async(local_model_status, thread_sensitive=False)()
    body = {"status": "ok" if ready else "unavailable", **checks, "local_model": local_model.state}
    return JsonResponse(body, status=200 if ready else 503)
