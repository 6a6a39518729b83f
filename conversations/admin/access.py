"""Admin for who may use what: group policies (models, shared budget, member defaults) on Django's
groups, models granted to one user, and users' API keys with their scopes."""

from decimal import Decimal
from typing import Any, Protocol, cast

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin
from django.contrib.auth.models import Group
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from conversations.ledger.limits import group_spent, month_start
from conversations.models import ApiKey, ChatModel, GroupPolicy, ModelGrant

NOT_NEGATIVE = ("monthly_budget", "member_monthly_budget")


class GroupPolicyForm(forms.ModelForm):
    class Meta:
        model = GroupPolicy
        fields = [
            "all_models", "allowed_models", "monthly_budget", "member_monthly_budget", "member_requests_per_minute",
            "member_tokens_per_minute",
        ]  # fmt: skip
        widgets = {"allowed_models": forms.CheckboxSelectMultiple}
        labels = {
            "all_models": "All models",
            "allowed_models": "Only these models",
            "monthly_budget": "Group monthly budget",
            "member_monthly_budget": "Each member's monthly budget",
            "member_requests_per_minute": "Each member's requests per minute",
            "member_tokens_per_minute": "Each member's tokens per minute",
        }

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data  # what ModelForm.clean returns
        for name in NOT_NEGATIVE:
            value = data.get(name)
            if value is not None and value < 0:
                self.add_error(name, "A budget cannot be negative.")
        return data


class GroupPolicyInline(admin.StackedInline):
    """At most one policy per group; a group without one lets its members use every model, without limits."""

    model = GroupPolicy
    form = GroupPolicyForm
    can_delete = False
    max_num = 1
    extra = 1
    verbose_name = verbose_name_plural = "models and budgets"


class _CountedGroup(Protocol):
    members: int


class ChatwebGroupAdmin(GroupAdmin):
    """Django's groups with what they grant, their members and what those spent this month."""

    inlines = [GroupPolicyInline]
    list_display = ["name", "member_count", "models", "monthly_budget", "spent_this_month"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Group]:
        return super().get_queryset(request).select_related("policy").annotate(members=Count("user", distinct=True))

    @admin.display(description="members", ordering="members")
    def member_count(self, obj: Group) -> int:
        return cast(_CountedGroup, obj).members  # annotated by get_queryset

    @admin.display(description="models")
    def models(self, obj: Group) -> str:
        policy = getattr(obj, "policy", None)
        if policy is None or policy.all_models:
            return "all"
        return ", ".join(model.label for model in policy.allowed_models.all()) or "none"

    @admin.display(description="group budget (USD / month)")
    def monthly_budget(self, obj: Group) -> Decimal | None:
        policy = getattr(obj, "policy", None)
        return policy.monthly_budget if policy is not None else None

    @admin.display(description="spent this month (USD)")
    def spent_this_month(self, obj: Group) -> Decimal:
        return group_spent(group_id=obj.pk, since=month_start(timezone.now()))


admin.site.unregister(Group)
admin.site.register(Group, ChatwebGroupAdmin)


class ModelGrantInline(admin.TabularInline):
    """Models this user may use whatever their groups say."""

    model = ModelGrant
    extra = 0
    verbose_name = "model granted directly"
    verbose_name_plural = "models granted directly (on top of the user's groups)"

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "model":
            kwargs["queryset"] = ChatModel.objects.order_by("position", "name")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Users' keys and their scopes. Users create keys on their own page (the secret is shown to them
    once); here an admin reviews and revokes them."""

    list_display = [
        "name", "user", "prefix", "read_only", "expires_at", "monthly_budget", "requests_per_minute", "created_at",
        "last_used_at", "revoked_at",
    ]  # fmt: skip
    list_filter = ["read_only", "revoked_at"]
    list_select_related = ["user"]
    search_fields = ["name", "prefix", "user__username"]
    fields = readonly_fields = (  # every field shown, none editable
        "user", "name", "prefix", "created_at", "last_used_at", "revoked_at", "expires_at", "allowed_models",
        "monthly_budget", "requests_per_minute", "read_only",
    )  # fmt: skip
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a key's scopes are fixed at creation: revoke it and have its user create another

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = 0
        for key in queryset.filter(revoked_at__isnull=True):
            key.revoked_at = timezone.now()
            key.save(update_fields=["revoked_at"])  # saved one by one: each save clears the key cache
            count += 1
        self.message_user(request, f"Revoked {count} key{'s' if count != 1 else ''}.")
