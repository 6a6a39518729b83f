"""Pages of the chat UI. Sending and streaming happen over the websocket (consumers.py)."""

from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model, login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.messages import get_messages
from django.core.exceptions import ValidationError
from django.core.handlers.asgi import ASGIRequest
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
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
    chat_model_default,
    chat_model_list,
)
from conversations.accounts.users import (
    account_sockets_check,
    preferences_theme_set,
    signup_allowed,
    user_signup,
)
from conversations.chat import turns as chat
from conversations.chat.attachments.lifecycle import attachment_discard
from conversations.chat.attachments.upload import attachment_limits, attachment_upload
from conversations.chat.selectors import (
    attachment_get,
    attachments_draft,
    conversation_get,
    message_get,
    message_page,
)
from conversations.chat.settings import (
    SETTINGS_FIELDS,
    conversation_settings_set,
    new_chat_settings,
    preferences_chat_set,
    preferences_get,
    preset_delete,
    preset_get,
    preset_list,
    preset_save,
)
from conversations.core.errors import InvalidInput, NotFound
from conversations.core.ids import row_id
from conversations.core.metrics import metrics_exposition
from conversations.ledger import reports as usage_report
from conversations.ledger.selectors import usage_list
from conversations.ledger.usage import month_start
from conversations.models import ApiKey, Attachment, Conversation, Message, Preset
from conversations.providers.health import local_model_status, readiness_check
from conversations.web.library import sidebar_context

TEMPLATE = "conversations/chat.html"
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
    """Django's sign-in page, with single sign-on's button when it is on; without it, the very first visitor
    is sent to create the admin account (with it, that account can be created from the page's link)."""

    def get(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if signup_allowed() and not settings.OIDC_ISSUER and not get_user_model().objects.exists():
            return redirect("signup")
        return super().get(request, *args, **kwargs)

    def get_context_data(self, **kwargs):
        return super().get_context_data(
            **kwargs, signups_open=signup_allowed(), sso_name=settings.OIDC_PROVIDER_NAME if settings.OIDC_ISSUER else "",
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


def _page(
    request: HttpRequest,
    *,
    conversation: Conversation | None = None,
    notice: str = "",
    draft: str = "",
    draft_attachments: list[Attachment] | None = None,
    status: int = 200,
    preset: Preset | None = None,
    typed_settings: dict[str, Any] | None = None,
    settings_error: InvalidInput | None = None,
) -> HttpResponse:
    messages, has_earlier = message_page(conversation=conversation) if conversation else ([], False)
    selected = conversation.model_id if conversation else None
    presets: list[Preset] = []
    chat_models = list(chat_model_list(user=request.user))
    if conversation is not None:
        settings_values: Any = conversation
    else:
        presets = list(preset_list(user=request.user))
        preset, settings_values = new_chat_settings(user=request.user, preset=preset)
        selected = preset.model_id if preset else None
    if selected is None:
        default = chat_model_default(user=request.user)
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
            "chat_models": chat_models,
            "selected_model_id": selected,
            "notice": notice,
            "draft": draft,
            "chat_settings": typed_settings or settings_values,
            "settings_error": settings_error,
            "presets": presets,
            "preset": preset,
            "reasoning_models": any(model.reasoning for model in chat_models),
            "attachments": draft_attachments or [],
            "attachment_limits": attachment_limits(),
        },
        status=status,
    )


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """A new chat; ``?preset=<id>`` starts it from that preset, else from the user's default one."""
    preset = None
    if "preset" in request.GET:
        try:
            preset = preset_get(user=request.user, preset_id=request.GET["preset"])
        except NotFound:
            raise Http404("No such preset.") from None
    return _page(request, preset=preset)


@login_required
def conversation_detail(request: HttpRequest, conversation_id: int) -> HttpResponse:
    return _page(request, conversation=conversation_get(user=request.user, conversation_id=conversation_id))


@login_required
def conversation_earlier_messages(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """The page of messages before ``?before=<id>``, loaded as the user scrolls up; without it, the
    latest page (a tab fetches it when a switched branch is more than one socket frame carries)."""
    conversation = conversation_get(user=request.user, conversation_id=conversation_id)
    before = row_id(request.GET["before"]) if "before" in request.GET else None
    if before is None and "before" in request.GET:
        return HttpResponse("?before=<message id> names no message.", status=400)
    messages, has_earlier = message_page(conversation=conversation, before_id=before)
    context = {"conversation": conversation, "messages": messages, "has_earlier": has_earlier}
    return render(request, f"{TEMPLATE}#earlier-messages", context)


@login_required
def message_detail(request: HttpRequest, conversation_id: int, message_id: int) -> HttpResponse:
    """One message whole: a reply too long for one websocket frame is fetched here by the tab."""
    conversation = conversation_get(user=request.user, conversation_id=conversation_id)
    message = message_get(conversation=conversation, message_id=message_id)
    return render(request, f"{TEMPLATE}#message", {"message": message})


@login_required
def message_markdown(request: HttpRequest, conversation_id: int, message_id: int) -> HttpResponse:
    """A message's text as written (Markdown), for copying and editing it."""
    conversation = conversation_get(user=request.user, conversation_id=conversation_id)
    message = message_get(conversation=conversation, message_id=message_id)
    return HttpResponse(message.content, content_type="text/markdown; charset=utf-8")


@require_POST
async def conversation_new(request: HttpRequest) -> HttpResponse:
    """Start a conversation with its first message; the reply streams on its page."""
    user = await request.auser()
    if not user.is_authenticated:
        return redirect("login")
    content = request.POST.get("message", "")
    typed = {field: request.POST.get(field, "") for field in SETTINGS_FIELDS}
    attachment_ids = request.POST.getlist("attachments")
    try:
        conversation = await chat.chat_start(
            user=user,
            content=content,
            model_name=request.POST.get("model") or None,
            settings=typed,
            attachment_ids=attachment_ids,
        )
    except ValidationError as exc:
        return await sync_to_async(_page_refused)(
            request, notice=" ".join(exc.messages), draft=content, typed=typed, attachment_ids=attachment_ids
        )
    except InvalidInput as exc:
        return await sync_to_async(_page_refused)(
            request, notice=exc.message, draft=content, typed=typed, attachment_ids=attachment_ids, settings_error=exc
        )
    return redirect("conversation_detail", conversation_id=conversation.pk)


def _page_refused(
    request: HttpRequest,
    *,
    notice: str,
    draft: str,
    typed: dict[str, Any],
    attachment_ids: list[str],
    settings_error: InvalidInput | None = None,
) -> HttpResponse:
    """The new-chat page again after a refused send, with the text, settings and files that were typed and attached."""
    kept = attachments_draft(user=request.user, ids=attachment_ids)
    return _page(
        request, notice=notice, draft=draft, draft_attachments=kept, typed_settings=typed,
        settings_error=settings_error, status=400,
    )  # fmt: skip


@login_required
@require_POST
def attachment_create(request: HttpRequest) -> HttpResponse:
    """Upload one file for the message being written; answers its chip (400 with the reason when refused)."""
    upload = request.FILES.get("file")
    name = request.POST.get("name")
    try:
        if upload is None:
            raise ValidationError("No file was received. Attach it again.")
        attachment = attachment_upload(user=request.user, upload=upload, name=name)
    except ValidationError as exc:
        error = " ".join(exc.messages)
        return render(request, f"{TEMPLATE}#attachment-error", {"error": error}, status=400)
    return render(request, f"{TEMPLATE}#attachment-chip", {"attachment": attachment, "editable": True})


@login_required
@require_POST
def attachment_delete(request: HttpRequest, attachment_id: int) -> HttpResponse:
    """Take an upload back out of the composer (a file already sent stays with its message)."""
    try:
        attachment_discard(user=request.user, attachment_id=attachment_id)
    except Attachment.DoesNotExist:
        raise Http404("No such file.") from None
    return HttpResponse("")


@login_required
def attachment_file(request: HttpRequest, attachment_id: int) -> FileResponse:
    """A stored file, to its owner (and admins) only: images inline, anything else as a download,
    never sniffed by the browser and never run as a page."""
    try:
        attachment = attachment_get(user=request.user, attachment_id=attachment_id)
    except Attachment.DoesNotExist:
        raise Http404("No such file.") from None
    return attachment_response(attachment)


def attachment_response(attachment: Attachment) -> FileResponse:
    """A stored file as a response: images inline, anything else as a download, never sniffed, never run."""
    response = FileResponse(
        attachment.file.open("rb"),
        as_attachment=not attachment.is_image,
        filename=attachment.name,
        content_type="text/plain; charset=utf-8" if attachment.content_type == "text/plain" else attachment.content_type,
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, max-age=3600"
    return response


@login_required
@require_POST
def conversation_settings(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """Change the chat's system prompt and parameters (from its next turn on); htmx gets the panel back."""
    conversation = conversation_get(user=request.user, conversation_id=conversation_id)
    typed = {field: request.POST.get(field, "") for field in SETTINGS_FIELDS}
    htmx = bool(request.headers.get("HX-Request"))
    try:
        conversation_settings_set(conversation=conversation, data=typed)
    except InvalidInput as exc:
        if not htmx:
            return _page(request, conversation=conversation, typed_settings=typed, settings_error=exc, status=400)
        context = {"conversation": conversation, "chat_settings": typed, "settings_error": exc, "settings_open": True}
        return render(request, f"{TEMPLATE}#chat-settings", context, status=400)
    if not htmx:
        return redirect("conversation_detail", conversation_id=conversation.pk)
    context = {"conversation": conversation, "chat_settings": conversation, "settings_saved": True, "settings_open": True}
    return render(request, f"{TEMPLATE}#chat-settings", context)


def _presets_page(request: HttpRequest, *, status: int = 200, **context: Any) -> HttpResponse:
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
def presets(request: HttpRequest) -> HttpResponse:
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
def preset_edit(request: HttpRequest, preset_id: int) -> HttpResponse:
    """Change one of the user's presets, or with ``delete`` in the form, delete it."""
    try:
        preset = preset_get(user=request.user, preset_id=preset_id, own=True)
    except NotFound:
        raise Http404("No such preset.") from None
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
def chat_defaults_set(request: HttpRequest) -> HttpResponse:
    """Keep the user's own system prompt and default preset for new chats."""
    try:
        preferences_chat_set(
            user=request.user,
            system_prompt=request.POST.get("system_prompt", ""),
            default_preset_id=request.POST.get("default_preset", ""),
        )
    except NotFound:
        raise Http404("No such preset.") from None
    except InvalidInput as exc:
        typed = request.POST.get("system_prompt", "")
        return _presets_page(request, defaults_error=exc, typed_prompt=typed, status=400)
    return redirect("presets")


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


def _keys_page(request: HttpRequest, form: ApiKeyForm, **context: Any) -> HttpResponse:
    base_url = request.build_absolute_uri("/v1")
    keys = api_key_list(user=request.user, spent_since=month_start(timezone.now()))
    return render(
        request, "conversations/keys.html",
        {"keys": keys, "base_url": base_url, "form": form, **context},
        status=400 if form.errors else 200,
    )


NEW_KEY_SESSION = "chatweb_new_api_key"


@never_cache
@login_required
def api_keys(request: HttpRequest) -> HttpResponse:
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
            user=request.user, name=data["name"], expires_at=form.expires_at, models=data["models"],
            monthly_budget=data["monthly_budget"], requests_per_minute=data["requests_per_minute"],
            read_only=data["read_only"],
        )
    except ValidationError as exc:
        form.add_error(None, exc)
        return _keys_page(request, form)
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


def metrics(request: HttpRequest) -> HttpResponse:
    """This worker's Prometheus metrics, for a scraper holding ``METRICS_TOKEN`` (404 while none is set)."""
    response = metrics_exposition(request)
    if response is None:
        raise Http404
    return response
