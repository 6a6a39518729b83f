"""Admin for providers and models, site settings, and conversations with their messages."""

from typing import Any

from asgiref.sync import async_to_sync
from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode

from conversations.chat.settings import chat_settings_clean
from conversations.chat.turns import conversation_delete
from conversations.core.errors import InvalidInput, UpstreamFailed
from conversations.library.sharing import share_revoke
from conversations.models import (
    ChatModel,
    Conversation,
    Deployment,
    Message,
    ModelAlias,
    Preset,
    Provider,
    SharedLink,
    SiteSettings,
)
from conversations.providers.catalog import base_url_is_local
from conversations.providers.completions import models_list
from conversations.providers.health import local_model_status
from conversations.providers.routes import routes_test


class ProviderForm(forms.ModelForm):
    """The key is write-only: never rendered back into the page."""

    base_url = forms.URLField(assume_scheme="https", help_text=Provider._meta.get_field("base_url").help_text)
    api_key = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Leave blank to keep the current key.",
    )
    clear_api_key = forms.BooleanField(required=False, help_text="Remove the stored key.")

    class Meta:
        model = Provider
        fields = ["name", "base_url", "api_key", "clear_api_key", "enabled"]

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data  # what ModelForm.clean returns
        if data.get("clear_api_key"):
            data["api_key"] = ""
        elif not data.get("api_key") and self.instance.pk:
            data["api_key"] = self.instance.api_key
        return data


class ChatModelInline(admin.TabularInline):
    model = ChatModel
    extra = 0
    fields = [
        "name",
        "display_name",
        "upstream_model",
        "enabled",
        "is_default",
        "position",
        "max_tokens",
        "reasoning",
        "accepts_images",
        "context_tokens",
    ]


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    form = ProviderForm
    list_display = ["name", "base_url", "key_hint", "enabled", "status"]
    readonly_fields = ["status"]
    inlines = [ChatModelInline]
    actions = ["fetch_models"]

    @admin.action(description="Fetch models: list what the provider offers, to add them")
    def fetch_models(self, request: HttpRequest, queryset: QuerySet[Provider]) -> None:
        """Each provider's ``/models``, with a link to add each id that no model of it uses yet."""
        for provider in queryset:
            try:
                ids = async_to_sync(models_list)(base_url=provider.base_url, api_key=provider.api_key)
            except UpstreamFailed as exc:
                self.message_user(request, f"{provider}: {exc.message}", messages.ERROR)
                continue
            used = set(provider.models.values_list("upstream_model", flat=True))
            used |= set(provider.deployments.values_list("upstream_model", flat=True))
            add = reverse("admin:conversations_chatmodel_add")
            new = [i for i in ids if i not in used]
            links = format_html_join(
                ", ",
                '<a href="{}?{}">{}</a>',
                ((add, urlencode({"provider": str(provider.pk), "upstream_model": i, "name": i}), i) for i in new),
            )
            self.message_user(
                request, format_html("{} offers {} models; not used yet: {}", provider, len(ids), links or "none")
            )

    @admin.display(description="Status")
    def status(self, obj: Provider) -> str:
        """The bundled model's state (up, restarting after a crash, down); other providers are not probed."""
        return str(local_model_status()) if obj.pk and base_url_is_local(obj.base_url) else "—"

    @admin.display(description="API key")
    def key_hint(self, obj: Provider) -> str:
        return f"…{obj.api_key[-4:]}" if len(obj.api_key) >= 12 else ("set" if obj.api_key else "none")


class DeploymentInline(admin.TabularInline):
    """Further providers of the model, tried in priority order when one fails (its own provider is priority 0)."""

    model = Deployment
    extra = 0
    fields = ["provider", "upstream_model", "priority", "weight", "rpm", "tpm", "enabled"]


class ModelAliasForm(forms.ModelForm):
    """An alias may not hide a model of the same name."""

    class Meta:
        model = ModelAlias
        fields = ["name", "model"]

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        if ChatModel.objects.filter(name=name).exists():
            raise forms.ValidationError("A model has that name already.")
        return name


class ModelAliasInline(admin.TabularInline):
    """Other names /v1 clients may call the model by (``default``, a retired model's name)."""

    model = ModelAlias
    form = ModelAliasForm
    extra = 0


@admin.register(ChatModel)
class ChatModelAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "display_name",
        "provider",
        "upstream_model",
        "enabled",
        "is_default",
        "position",
        "max_tokens",
        "reasoning",
        "accepts_images",
    ]
    list_filter = ["provider", "enabled", "accepts_images"]
    list_editable = ["enabled", "position", "accepts_images"]
    search_fields = ["name", "display_name", "upstream_model"]
    inlines = [DeploymentInline, ModelAliasInline]
    actions = ["test_deployments"]

    @admin.action(description="Test: send a one-token request to each deployment")
    def test_deployments(self, request: HttpRequest, queryset: QuerySet[ChatModel]) -> None:
        for model in queryset.select_related("provider"):
            results = async_to_sync(routes_test)(model=model)
            rows = format_html_join("; ", "{}: {}", ((label, outcome) for label, outcome, _ in results))
            level = messages.SUCCESS if all(ok for _, _, ok in results) else messages.WARNING
            self.message_user(request, format_html("{}: {}", model.name, rows), level)


def attachments_shown(message: Message) -> str:
    """A message's attached files: images as thumbnails, documents as links, each opening the file."""
    items = (
        format_html(
            '<a href="{}" target="_blank" rel="noopener"><img src="{}" alt="{}" class="attachment-thumb"></a>',
            url,
            url,
            a.name,
        )
        if a.is_image
        else format_html('<a href="{}">{}</a> ({} tokens)', url, a.name, a.tokens)
        for a in message.attachments.all()
        for url in [reverse("attachment_file", args=[a.pk])]
    )
    return format_html_join(" ", "{}", ((item,) for item in items)) or "—"


class MessageInline(admin.StackedInline):
    model = Message
    extra = 0
    can_delete = False
    fields = readonly_fields = (  # every field shown, none editable
        "role",
        "status",
        "content",
        "attachments",
        "error",
        "model_name",
        "finish_reason",
        "prompt_tokens",
        "completion_tokens",
        "created_at",
    )

    class Media:
        css = {"all": ["chatweb-admin.css"]}  # the attachments' thumbnails

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        return super().get_queryset(request).prefetch_related("attachments")

    @admin.display(description="Attached files")
    def attachments(self, obj: Message) -> str:
        return attachments_shown(obj)


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["title", "user", "model", "created_at", "updated_at"]
    list_filter = ["model"]
    search_fields = ["title", "user__username"]
    raw_id_fields = ["user"]
    inlines = [MessageInline]
    date_hierarchy = "created_at"

    def delete_model(self, request: HttpRequest, obj: Conversation) -> None:
        conversation_delete(conversation=obj)  # its files too

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> None:
        for conversation in queryset:
            conversation_delete(conversation=conversation)


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "conversation",
        "role",
        "status",
        "model_name",
        "prompt_tokens",
        "completion_tokens",
        "created_at",
    ]
    list_filter = ["status", "role", "model_name"]
    search_fields = ["content"]
    raw_id_fields = ["conversation"]
    readonly_fields = ["created_at", "updated_at", "finished_at"]


@admin.register(SiteSettings)
class SiteSettingsAdmin(admin.ModelAdmin):
    list_display = ["__str__", "signups_open", "sharing_enabled", "generate_titles"]

    def has_add_permission(self, request) -> bool:
        return not SiteSettings.objects.exists()

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class PresetForm(forms.ModelForm):
    """A preset's parameters checked as the chat checks them (ranges, the model's length limit)."""

    class Meta:
        model = Preset
        fields = ["name", "user", "model", "system_prompt", "temperature", "top_p", "max_tokens", "reasoning_effort"]

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data  # what ModelForm.clean returns
        try:
            chat_settings_clean(data={k: "" if v is None else v for k, v in data.items()}, model=data.get("model"))
        except InvalidInput as exc:
            self.add_error(exc.param, exc.message)
        return data


@admin.register(Preset)
class PresetAdmin(admin.ModelAdmin):
    """Presets with no user are published site-wide: every user sees them and can start chats from them."""

    form = PresetForm
    list_display = ["name", "owner", "model", "temperature", "max_tokens"]
    list_filter = [("user", admin.EmptyFieldListFilter)]
    search_fields = ["name", "user__username"]
    autocomplete_fields = ["user"]

    @admin.display(description="Owner", ordering="user__username")
    def owner(self, preset: Preset) -> str:
        return preset.user.get_username() if preset.user else "Site-wide"


@admin.register(SharedLink)
class SharedLinkAdmin(admin.ModelAdmin):
    """Every user's share links, to review what is public and revoke it."""

    list_display = ["title", "user", "created_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["title", "user__username", "token"]
    readonly_fields = ["token", "user", "conversation", "title", "messages", "created_at"]
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Revoke the selected links")
    def revoke(self, request: HttpRequest, queryset: QuerySet[SharedLink]) -> None:
        for link in queryset:
            share_revoke(link=link)
        self.message_user(request, f"{queryset.count()} link(s) revoked.", messages.SUCCESS)
