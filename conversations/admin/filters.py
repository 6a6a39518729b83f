"""Sidebar filters for large tables: the model asked, a date range, a user and a metadata pair, none
of which reads the whole table for its choices. Its own module because the usage admin uses them too."""

import datetime
from collections.abc import Iterator
from typing import Any

from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from conversations.core.ids import row_id
from conversations.ledger.stored import stored_completions_with_metadata
from conversations.models import ChatModel, StoredCompletion


class StoredModelFilter(admin.SimpleListFilter):
    """The models stored completions were asked of: every configured model and any seen lately.

    A DISTINCT over the whole table would read all of it on every page, so the choices come
    from the ChatModel table plus the newest RECENT rows (read through the created_at index).
    """

    title = "model"
    parameter_name = "model"
    recent = 5_000

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        names = set(ChatModel.objects.values_list("name", flat=True))
        names.update(StoredCompletion.objects.order_by("-created_at").values_list("model", flat=True)[: self.recent])
        if chosen := self.value():
            names.add(chosen)
        return [(name, name) for name in sorted(names)]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(model=self.value()) if self.value() else queryset


class InputFilter(admin.ListFilter):
    """A sidebar filter made of text inputs, one per GET parameter, applied on submit."""

    template = "admin/conversations/storedcompletion/input_filter.html"
    # (GET parameter, label, input type, placeholder)
    inputs: tuple[tuple[str, str, str, str], ...] = ()

    def __init__(self, request: HttpRequest, params: dict[str, list[str]], model: Any, model_admin: Any) -> None:
        super().__init__(request, params, model, model_admin)  # type: ignore[arg-type]  # django-stubs: dict[str, str]; Django 5 passes lists
        for name, *_ in self.inputs:
            if name in params:
                value = params.pop(name)[-1].strip()
                if value:
                    self.used_parameters[name] = value

    def value(self, name: str) -> str:
        value = self.used_parameters.get(name, "")
        return value if isinstance(value, str) else ""  # only text is kept, in __init__

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str | None]:
        return [name for name, *_ in self.inputs]

    def choices(self, changelist: Any) -> Iterator[dict[str, Any]]:  # type: ignore[override]  # the keys its own template reads; django-stubs fixes SimpleListFilter's
        mine = self.expected_parameters()
        keep = [(key, value) for key, values in changelist.filter_params.items() if key not in mine for value in values]
        yield {
            "keep": keep,
            "inputs": [
                {"name": name, "label": label, "type": kind, "placeholder": placeholder, "value": self.value(name)}
                for name, label, kind, placeholder in self.inputs
            ],
            "active": bool(self.used_parameters),
            "clear_url": changelist.get_query_string(remove=mine),
        }

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return self.apply(request, queryset) if self.used_parameters else queryset

    def apply(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        raise NotImplementedError


class CreatedRangeFilter(InputFilter):
    """From and to dates, both inclusive, in the site's time zone (UTC)."""

    title = "date"
    inputs = (("created_from", "From", "date", "YYYY-MM-DD"), ("created_to", "To", "date", "YYYY-MM-DD"))

    def apply(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        bounds = {}
        for name, *_ in self.inputs:
            if raw := self.value(name):
                try:
                    bounds[name] = datetime.date.fromisoformat(raw)
                except ValueError:
                    messages.error(request, f"Ignored the date {raw!r}: dates are written YYYY-MM-DD.")
        tz = timezone.get_current_timezone()
        if "created_from" in bounds:
            start = datetime.datetime.combine(bounds["created_from"], datetime.time.min, tzinfo=tz)
            queryset = queryset.filter(created_at__gte=start)
        if "created_to" in bounds:
            after = bounds["created_to"] + datetime.timedelta(days=1)
            end = datetime.datetime.combine(after, datetime.time.min, tzinfo=tz)
            queryset = queryset.filter(created_at__lt=end)
        return queryset


class UserFilter(InputFilter):
    """A username or a user id: a dropdown of every user would not scale."""

    title = "user"
    inputs = (("user", "Username or id", "text", "alice or 42"),)

    def apply(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        raw = self.value("user")
        match = Q(user__username=raw)
        if (user_id := row_id(raw)) is not None:
            match |= Q(user_id=user_id)
        return queryset.filter(match)


class MetadataFilter(InputFilter):
    """A metadata pair: the key with a value matches that exact value; a key alone matches its presence."""

    title = "metadata"
    inputs = (("meta_key", "Key", "text", "key"), ("meta_value", "Value (blank: any)", "text", "value"))

    def apply(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        key, value = self.value("meta_key"), self.value("meta_value")
        if not key:
            messages.error(request, "Ignored the metadata filter: give a key (and optionally a value).")
            return queryset
        if not value:
            return queryset.filter(metadata__has_key=key)
        return stored_completions_with_metadata(queryset, key=key, value=value)
