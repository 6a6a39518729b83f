"""Admin for usage: prices, per-user limits, the ledger and a usage report."""

from decimal import Decimal
from typing import Any, Protocol, cast

from asgiref.sync import async_to_sync
from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import (
    UserAdmin,  # importing it registers Django's User admin, replaced below
)
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone

from conversations.accounts.users import account_sockets_check
from conversations.admin.access import ModelGrantInline
from conversations.admin.filters import (
    CreatedRangeFilter,
    StoredModelFilter,
    UserFilter,
)
from conversations.admin.paginators import CappedCountPaginator
from conversations.ledger.limits import month_start
from conversations.ledger.reports import admin_report
from conversations.models import (
    ChatModel,
    ModelPrice,
    SsoIdentity,
    UsageRecord,
    UserLimits,
)

PRICE_FIELDS = ["input_per_million", "cached_input_per_million", "output_per_million"]


class ModelPriceForm(forms.ModelForm):
    """Prices are never negative (the database says so too); the form says it next to the field."""

    class Meta:
        model = ModelPrice
        fields = ["model", *PRICE_FIELDS, "effective_from", "source"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in PRICE_FIELDS:
            self.fields[name].help_text = "USD per million tokens."

    def _clean_price(self, name: str) -> Decimal | None:
        value = self.cleaned_data.get(name)
        if value is not None and value < 0:
            raise forms.ValidationError("A price cannot be negative.", code="negative_price")
        return value

    def clean_input_per_million(self) -> Decimal | None:
        return self._clean_price("input_per_million")

    def clean_cached_input_per_million(self) -> Decimal | None:
        return self._clean_price("cached_input_per_million")

    def clean_output_per_million(self) -> Decimal | None:
        return self._clean_price("output_per_million")


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    form = ModelPriceForm
    list_display = ["model", *PRICE_FIELDS, "effective_from", "source"]
    list_filter = ["model"]
    search_fields = ["model"]
    ordering = ["model", "-effective_from"]
    date_hierarchy = "effective_from"


def _default_help(name: str, unit: str) -> str:
    default = settings.USAGE_DEFAULTS.get(name)
    shown = "no limit" if default is None else f"{default} {unit}"
    return f"Blank: the most generous default of the user's groups, else the site's ({shown})."


class UserLimitsForm(forms.ModelForm):
    class Meta:
        model = UserLimits
        fields = ["monthly_budget", "requests_per_minute", "tokens_per_minute"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["monthly_budget"].help_text = "USD per calendar month (UTC). " + _default_help(
            "monthly_budget", "USD"
        )
        budget = self.fields["monthly_budget"]
        if isinstance(budget, forms.DecimalField):  # the model's DecimalField
            budget.min_value = 0
        self.fields["requests_per_minute"].help_text = _default_help("requests_per_minute", "requests/min")
        self.fields["tokens_per_minute"].help_text = _default_help("tokens_per_minute", "tokens/min")

    def clean_monthly_budget(self) -> Decimal | None:
        value = self.cleaned_data.get("monthly_budget")
        if value is not None and value < 0:
            raise forms.ValidationError("A budget cannot be negative.", code="negative_budget")
        return value


class UserLimitsInline(admin.StackedInline):
    model = UserLimits
    form = UserLimitsForm
    can_delete = False
    max_num = 1
    extra = 1
    verbose_name = verbose_name_plural = "usage limits"


def _month_spent() -> Coalesce:
    spent = (
        UsageRecord.objects.filter(user=OuterRef("user"), created_at__gte=month_start(timezone.now()))
        .order_by()
        .values("user")
        .annotate(total=Sum("cost"))
        .values("total")
    )
    cost = UsageRecord._meta.get_field("cost")
    return Coalesce(Subquery(spent, output_field=cost), Value(Decimal(0)), output_field=cost)


class _SpentLimits(Protocol):
    month_spent: Decimal


@admin.register(UserLimits)
class UserLimitsAdmin(admin.ModelAdmin):
    form = UserLimitsForm
    list_display = ["user", "monthly_budget", "spent_this_month", "requests_per_minute", "tokens_per_minute"]
    list_select_related = ["user"]
    search_fields = ["user__username", "user__email"]
    raw_id_fields = ["user"]

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm]:
        kwargs["fields"] = ["user", "monthly_budget", "requests_per_minute", "tokens_per_minute"]
        return super().get_form(request, obj, change, **kwargs)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(month_spent=_month_spent())

    @admin.display(description="spent this month (USD)", ordering="month_spent")
    def spent_this_month(self, obj: UserLimits) -> Decimal:
        return cast(_SpentLimits, obj).month_spent  # annotated by get_queryset


User = get_user_model()


class SsoIdentityInline(admin.TabularInline):
    """The identity provider accounts the user signs in with; adding one links an existing account."""

    model = SsoIdentity
    extra = 0
    fields = ["issuer", "subject", "created_at", "last_login_at"]
    readonly_fields = ["created_at", "last_login_at"]


class ChatwebUserAdmin(UserAdmin):
    """Django's user admin with the user's usage limits inline. A user deactivated, deleted or given a
    new password here loses their open chat sockets (each closes unless its session still signs in)."""

    inlines = [*UserAdmin.inlines, UserLimitsInline, ModelGrantInline, SsoIdentityInline]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change:
            async_to_sync(account_sockets_check)(user_id=obj.pk)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        user_id = obj.pk
        super().delete_model(request, obj)
        async_to_sync(account_sockets_check)(user_id=user_id)

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> HttpResponse:
        response = super().user_change_password(request, id, form_url)
        if request.method == "POST" and response.status_code == 302:
            async_to_sync(account_sockets_check)(user_id=int(id))
        return response


admin.site.unregister(User)
admin.site.register(User, ChatwebUserAdmin)


class UsageModelFilter(StoredModelFilter):
    """The models in the ledger: configured ones and those seen in the newest rows (no DISTINCT over the table)."""

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        names = set(ChatModel.objects.values_list("name", flat=True))
        names.update(ModelPrice.objects.values_list("model", flat=True))
        names.update(UsageRecord.objects.order_by("-created_at").values_list("model", flat=True)[: self.recent])
        if chosen := self.value():
            names.add(chosen)
        return [(name, name) for name in sorted(names)]


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    """The ledger, read-only: rows are written by the chat and /v1 as completions happen."""

    list_display = [
        "created_at", "user", "model", "provider", "source", "prompt_tokens", "cached_tokens",
        "completion_tokens", "reasoning_tokens", "cost", "estimated", "priced", "state",
    ]  # fmt: skip
    list_filter = [UsageModelFilter, "provider", "estimated", "priced", "state", CreatedRangeFilter, UserFilter]
    list_select_related = ["user"]
    ordering = ["-created_at", "-id"]
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = CappedCountPaginator
    list_per_page = 100
    change_list_template = "admin/conversations/usagerecord/change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # totals are sums of the ledger: rows are never removed by hand

    @admin.display(description="source")
    def source(self, obj: UsageRecord) -> str:
        return "api" if obj.api_key_id is not None else "chat"

    def get_urls(self) -> list:
        report = path("report/", self.admin_site.admin_view(self.report_view), name="conversations_usagerecord_report")
        return [report, *super().get_urls()]

    def report_view(self, request: HttpRequest) -> TemplateResponse:
        """Totals by user, by model and by day over the last N days (30 unless ?days=), with grand totals."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            days = min(max(int(request.GET.get("days", 30)), 1), 366)
        except ValueError:
            days = 30
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Usage report: last {days} days (UTC)",
            "report": admin_report(now=timezone.now(), days=days),
            "day_choices": [7, 30, 90, 365],
        }
        return TemplateResponse(request, "admin/conversations/usagerecord/report.html", context)
