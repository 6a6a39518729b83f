"""Admin for providers and models, site settings, and conversations with their messages."""

from django import forms
from django.contrib import admin

from ..models import ChatModel, Conversation, Message, Provider, SiteSettings
from ..services.health import local_model_status
from ..services.providers import provider_is_local


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

    def clean(self):
        data = super().clean()
        if data.get("clear_api_key"):
            data["api_key"] = ""
        elif not data.get("api_key") and self.instance.pk:
            data["api_key"] = self.instance.api_key
        return data


class ChatModelInline(admin.TabularInline):
    model = ChatModel
    extra = 0
    fields = ["name", "display_name", "upstream_model", "enabled", "is_default", "position", "max_tokens"]


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    form = ProviderForm
    list_display = ["name", "base_url", "key_hint", "enabled", "status"]
    readonly_fields = ["status"]
    inlines = [ChatModelInline]

    @admin.display(description="Status")
    def status(self, obj: Provider) -> str:
        """The bundled model's state (up, restarting after a crash, down); other providers are not probed."""
        return str(local_model_status()) if obj.pk and provider_is_local(obj) else "—"

    @admin.display(description="API key")
    def key_hint(self, obj: Provider) -> str:
        return f"…{obj.api_key[-4:]}" if len(obj.api_key) >= 12 else ("set" if obj.api_key else "none")


@admin.register(ChatModel)
class ChatModelAdmin(admin.ModelAdmin):
    list_display = [
        "name", "display_name", "provider", "upstream_model", "enabled", "is_default", "position", "max_tokens"
    ]
    list_filter = ["provider", "enabled"]
    list_editable = ["enabled", "position"]
    search_fields = ["name", "display_name", "upstream_model"]


class MessageInline(admin.StackedInline):
    model = Message
    extra = 0
    can_delete = False
    fields = ["role", "status", "content", "error", "model_name", "finish_reason", "prompt_tokens", "completion_tokens", "created_at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["title", "user", "model", "created_at", "updated_at"]
    list_filter = ["model"]
    search_fields = ["title", "user__username"]
    raw_id_fields = ["user"]
    inlines = [MessageInline]
    date_hierarchy = "created_at"


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["id", "conversation", "role", "status", "model_name", "prompt_tokens", "completion_tokens", "created_at"]
    list_filter = ["status", "role", "model_name"]
    search_fields = ["content"]
    raw_id_fields = ["conversation"]
    readonly_fields = ["created_at", "updated_at", "finished_at"]


@admin.register(SiteSettings)
class SiteSettingsAdmin(admin.ModelAdmin):
    list_display = ["__str__", "signups_open"]

    def has_add_permission(self, request) -> bool:
        return not SiteSettings.objects.exists()

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
