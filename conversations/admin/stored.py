"""Admin review of stored completions."""

import datetime
import json
import re
from collections.abc import Iterator
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.handlers.asgi import ASGIRequest
from django.core.paginator import Page, Paginator
from django.db import connections
from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.forms.fields import InvalidJSONInput
from django.http import HttpRequest, StreamingHttpResponse
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join

from conversations.chat.attachments.parts import document_blocks_split
from conversations.core.errors import InvalidInput
from conversations.core.ids import row_id
from conversations.core.metadata import metadata_check
from conversations.ledger.finetune import afine_tuning_jsonl, fine_tuning_jsonl
from conversations.ledger.stored import stored_completions_with_metadata
from conversations.models import ChatModel, StoredCompletion

# The list never counts the whole table: its paginator counts at most COUNT_CAP rows (and on
# PostgreSQL reads the planner's estimate for the unfiltered table), facets are off, and the
# heavy JSON columns are deferred; a page reads its ids first, then its rows. Filters are plain
# GET parameters, so "select all" hands the filtered queryset to the actions and the JSONL export
# covers the whole filtered list.


class CappedCountPaginator(Paginator):
    """Counts up to ``cap`` rows with a LIMITed subquery instead of ``COUNT(*)`` over the table.

    The unfiltered list on PostgreSQL takes ``pg_class.reltuples`` (kept by ANALYZE/autovacuum)
    when it says the table is larger than the cap. ``is_capped`` / ``is_estimate`` tell the
    template to say "more than" / "about".
    """

    cap = 10_000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.is_capped = False
        self.is_estimate = False

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not queryset.query.where and connections[queryset.db].vendor == "postgresql":
            estimate = self._table_estimate(queryset)
            if estimate > self.cap:
                self.is_estimate = True
                return estimate
        bounded = queryset.order_by()[: self.cap + 1].count()
        if bounded > self.cap:
            self.is_capped = True
            return self.cap
        return bounded

    def page(self, number: Any) -> Page:
        """The page's primary keys first, then those rows by primary key, in the same order.

        Asked for whole rows, PostgreSQL answers an id-prefix search matching many rows by walking
        the created_at index newest first and stopping at the page's last match, reading the table
        row of every entry it passes (with ids that grew with time, 279,104 rows for a prefix
        matching 65,536 of 10^6: 180-260 ms). Asked for the ids alone, it walks the
        ``(created_at, id)`` index and tests each id there, without reading the table (60 ms for
        the same walk), as it does for a deep page of the whole list. The second query has no
        LIMIT, so it looks the page's rows up by key and sorts those few.
        """
        page = super().page(number)
        if isinstance(page.object_list, QuerySet):
            ids = list(page.object_list.values_list("pk", flat=True))
            page.object_list = self.object_list.filter(pk__in=ids)
        return page

    @staticmethod
    def _table_estimate(queryset: QuerySet) -> int:
        with connections[queryset.db].cursor() as cursor:
            cursor.execute(
                "SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)",
                [connections[queryset.db].ops.quote_name(queryset.model._meta.db_table)],
            )
            row = cursor.fetchone()
        return int(row[0]) if row and row[0] is not None else -1


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
        if self.value():
            names.add(self.value())
        return [(name, name) for name in sorted(names)]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(model=self.value()) if self.value() else queryset


class InputFilter(admin.ListFilter):
    """A sidebar filter made of text inputs, one per GET parameter, applied on submit."""

    template = "admin/conversations/storedcompletion/input_filter.html"
    # (GET parameter, label, input type, placeholder)
    inputs: tuple[tuple[str, str, str, str], ...] = ()

    def __init__(self, request: HttpRequest, params: dict[str, list[str]], model: Any, model_admin: Any) -> None:
        super().__init__(request, params, model, model_admin)
        for name, *_ in self.inputs:
            if name in params:
                value = params.pop(name)[-1].strip()
                if value:
                    self.used_parameters[name] = value

    def value(self, name: str) -> str:
        return self.used_parameters.get(name, "")

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str]:
        return [name for name, *_ in self.inputs]

    def choices(self, changelist: Any) -> Iterator[dict[str, Any]]:
        mine = self.expected_parameters()
        keep = [
            (key, value)
            for key, values in changelist.filter_params.items()
            if key not in mine
            for value in values
        ]
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


class PrettyJSONField(forms.JSONField):
    def prepare_value(self, value: Any) -> str:
        if isinstance(value, InvalidJSONInput):
            return value
        return json.dumps(value, ensure_ascii=False, indent=2, cls=self.encoder)


class StoredCompletionForm(forms.ModelForm):
    metadata = PrettyJSONField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 8, "cols": 60, "class": "vLargeTextField"}),
        help_text="A JSON object of up to 16 string pairs (keys up to 64 characters, values up to 512).",
    )

    class Meta:
        model = StoredCompletion
        fields = ["metadata"]

    def clean_metadata(self) -> dict[str, str]:
        try:
            return metadata_check(self.cleaned_data.get("metadata")) or {}
        except InvalidInput as error:
            raise forms.ValidationError(error.message) from error


class StoredCompletionChangeList(ChangeList):
    """The list shows no transcripts, so it leaves the large JSON columns in the database."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet:
        return super().get_queryset(request, exclude_parameters).defer("request", "messages", "response")


def _pretty(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=False, default=str)


def _arguments(raw: Any) -> str:
    """Tool-call arguments are a JSON string; show them indented when they parse."""
    if isinstance(raw, str):
        try:
            return _pretty(json.loads(raw))
        except ValueError:
            return raw
    return _pretty(raw)


def _text(text: str) -> list[dict[str, str]]:
    """Text, its attached documents (delimited blocks at its start) shown apart as chips."""
    documents, rest = document_blocks_split(text)
    shown = [{"kind": "document", "name": name, "text": body} for name, body in documents]
    return shown + ([{"kind": "text", "text": rest}] if rest else [])


def _image(part: dict[str, Any]) -> dict[str, str] | None:
    """An image part to show as a thumbnail: a stored file of chatweb's, or an inline PNG, JPEG, WebP or GIF."""
    url = (part.get("image_url") or {}).get("url") if isinstance(part.get("image_url"), dict) else None
    if not isinstance(url, str):
        return None
    if re.fullmatch(r"/files/\d+", url) or re.match(r"data:image/(png|jpeg|webp|gif);base64,[A-Za-z0-9+/=]+\Z", url):
        return {"kind": "image", "url": url, "label": url if url.startswith("/") else f"inline image, {len(url):,} characters"}
    return None


def _content(content: Any) -> list[dict[str, str]]:
    """Text, or content parts (text shown as text, documents as chips, images as thumbnails, other parts as
    their JSON)."""
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return _text(content)
    if isinstance(content, list):
        shown = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in ("text", "input_text") and isinstance(part.get("text"), str):
                shown += _text(part["text"])
            elif kind == "image_url" and (image := _image(part)) is not None:
                shown.append(image)
            elif kind == "refusal":
                shown.append({"kind": "refusal", "text": str(part.get("refusal", ""))})
            else:
                label = part.get("type", "part") if isinstance(part, dict) else "part"
                shown.append({"kind": "json", "label": str(label), "text": _pretty(part)})
        return shown
    return [{"kind": "json", "label": "content", "text": _pretty(content)}]


def _tool_calls(message: dict[str, Any]) -> list[dict[str, str]]:
    calls = []
    for call in message.get("tool_calls") or []:
        function = (call or {}).get("function") or {}
        calls.append(
            {
                "id": str(call.get("id") or ""),
                "name": str(function.get("name") or call.get("type") or "?"),
                "arguments": _arguments(function.get("arguments", "")),
            }
        )
    if isinstance(message.get("function_call"), dict):
        function = message["function_call"]
        calls.append(
            {"id": "", "name": str(function.get("name") or "?"), "arguments": _arguments(function.get("arguments", ""))}
        )
    return calls


def _message(message: Any) -> dict[str, Any]:
    if not isinstance(message, dict):
        return {"role": "?", "content": [{"kind": "json", "label": "message", "text": _pretty(message)}]}
    return {
        "role": str(message.get("role", "?")),
        "name": str(message.get("name") or ""),
        "tool_call_id": str(message.get("tool_call_id") or ""),
        "content": _content(message.get("content")),
        "refusal": str(message.get("refusal") or ""),
        "tool_calls": _tool_calls(message),
    }


@admin.register(StoredCompletion)
class StoredCompletionAdmin(admin.ModelAdmin):
    form = StoredCompletionForm
    list_display = ["id", "created_at", "user", "model", "source", "status", "tokens", "latency"]
    list_filter = [StoredModelFilter, "status", "source", CreatedRangeFilter, UserFilter, MetadataFilter]
    list_select_related = ["user"]
    ordering = ["-created_at", "-id"]
    search_fields = ["id"]  # shows the search box; get_search_results does the searching
    search_help_text = (
        "A chatcmpl-… id (or its beginning) finds that completion; any other text searches "
        "the input messages and the response (their JSON, case-insensitive). "
        "Filter by metadata with the key/value boxes under Filter."
    )
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = CappedCountPaginator
    list_per_page = 50
    actions = ["export_fine_tuning_jsonl"]
    fieldsets = [
        (None, {"fields": ["id", "created_at", "user", "api_key", "source", "status", "conversation"]}),
        ("Model", {"fields": ["model", "provider", "upstream_model", "failed_attempts"]}),
        ("Usage", {"fields": ["prompt_tokens", "completion_tokens", "total_tokens", "latency_ms"]}),
        ("Metadata", {"fields": ["metadata"]}),
        ("Transcript", {"fields": ["transcript"]}),
        ("Request", {"fields": ["request_json"]}),
        ("Raw response", {"fields": ["response_json"], "classes": ["collapse"]}),
    ]
    readonly_fields = [
        "id", "created_at", "user", "api_key", "source", "status", "conversation",
        "model", "provider", "upstream_model", "failed_attempts",
        "prompt_tokens", "completion_tokens", "total_tokens", "latency_ms",
        "transcript", "request_json", "response_json",
    ]  # fmt: skip

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # written by /v1 and the chat, never by hand

    @admin.display(description="Failed before")
    def failed_attempts(self, obj: StoredCompletion) -> str:
        """The deployments tried before the one that answered: which, how and when."""
        if not obj.attempts:
            return "—"
        return format_html(
            "<ol>{}</ol>",
            format_html_join(
                "", "<li>{} — {} at {}</li>", ((a["deployment"], a["error"], a["at"]) for a in obj.attempts)
            ),
        )

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return StoredCompletionChangeList

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("user", "api_key", "message")

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        if term.startswith("chatcmpl-"):
            return queryset.filter(pk__startswith=term), False
        # The JSON as stored: SQLite keeps \\u escapes for non-ASCII, PostgreSQL's jsonb::text does not;
        # both escape quotes and backslashes. Look for the term written each way.
        written = {term, json.dumps(term)[1:-1], json.dumps(term, ensure_ascii=False)[1:-1]}
        match = Q(pk__startswith=term)
        for text in written:
            match |= Q(messages_text__icontains=text) | Q(response_text__icontains=text)
        queryset = queryset.alias(
            messages_text=Cast("messages", TextField()), response_text=Cast("response", TextField())
        )
        return queryset.filter(match), False

    # List columns.

    @admin.display(description="tokens")
    def tokens(self, obj: StoredCompletion) -> str:
        if obj.prompt_tokens is None and obj.completion_tokens is None:
            return "–"
        return f"{obj.prompt_tokens or 0} → {obj.completion_tokens or 0}"

    @admin.display(description="latency", ordering="latency_ms")
    def latency(self, obj: StoredCompletion) -> str:
        return "–" if obj.latency_ms is None else f"{obj.latency_ms:,} ms"

    # Detail fields.

    @admin.display(description="total tokens")
    def total_tokens(self, obj: StoredCompletion) -> str:
        if obj.prompt_tokens is None and obj.completion_tokens is None:
            return "–"
        return str((obj.prompt_tokens or 0) + (obj.completion_tokens or 0))

    @admin.display(description="conversation")
    def conversation(self, obj: StoredCompletion) -> str:
        if obj.message_id is None:
            return "– (stored through /v1)"
        conversation = obj.message.conversation
        url = reverse("admin:conversations_conversation_change", args=[conversation.pk])
        return format_html('<a href="{}">{}</a> (message #{})', url, conversation.title, obj.message_id)

    @admin.display(description="transcript")
    def transcript(self, obj: StoredCompletion) -> str:
        response = obj.response if isinstance(obj.response, dict) else {}
        choices = [
            {
                "index": choice.get("index", i),
                "finish_reason": choice.get("finish_reason") or "",
                "message": _message(choice.get("message") or {}),
            }
            for i, choice in enumerate(response.get("choices") or [])
            if isinstance(choice, dict)
        ]
        context = {
            "messages": [_message(m) for m in (obj.messages if isinstance(obj.messages, list) else [obj.messages])],
            "choices": choices,
            "usage": _pretty(response["usage"]) if response.get("usage") else "",
            "latency_ms": obj.latency_ms,
            "status": obj.get_status_display(),
        }
        # An autoescaping template: every piece of model and user text is escaped.
        return render_to_string("admin/conversations/storedcompletion/transcript.html", context)

    @admin.display(description="request parameters")
    def request_json(self, obj: StoredCompletion) -> str:
        return format_html("<pre>{}</pre>", _pretty(obj.request))

    @admin.display(description="response (raw)")
    def response_json(self, obj: StoredCompletion) -> str:
        return format_html("<pre>{}</pre>", _pretty(obj.response))

    # Actions.

    @admin.action(description="Export selected as JSONL (fine-tuning)", permissions=["view"])
    def export_fine_tuning_jsonl(self, request: HttpRequest, queryset: QuerySet) -> StreamingHttpResponse:
        """One line per finished completion in OpenAI's fine-tuning format; "select all" exports the filtered list."""
        lines = afine_tuning_jsonl(queryset) if isinstance(request, ASGIRequest) else fine_tuning_jsonl(queryset)
        response = StreamingHttpResponse(lines, content_type="application/jsonl; charset=utf-8")
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = f'attachment; filename="stored-completions-{stamp}.jsonl"'
        return response
