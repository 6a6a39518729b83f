"""Admin review of stored completions."""

import json
from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.core.handlers.asgi import ASGIRequest
from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.http import HttpRequest, StreamingHttpResponse
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from conversations.admin.filters import CreatedRangeFilter, MetadataFilter, StoredModelFilter, UserFilter
from conversations.admin.forms import StoredCompletionForm
from conversations.admin.paginators import CappedCountPaginator
from conversations.admin.transcripts import json_pretty, transcript_message
from conversations.ledger.finetune import afine_tuning_jsonl, fine_tuning_jsonl
from conversations.models import StoredCompletion

# The list never counts the whole table: its paginator counts at most its ``cap`` of rows (and on
# PostgreSQL reads the planner's estimate for the unfiltered table), facets are off, and the
# heavy JSON columns are deferred; a page reads its ids first, then its rows. Filters are plain
# GET parameters, so "select all" hands the filtered queryset to the actions and the JSONL export
# covers the whole filtered list.


class StoredCompletionChangeList(ChangeList):
    """The list shows no transcripts, so it leaves the large JSON columns in the database."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet:
        return super().get_queryset(request, exclude_parameters).defer("request", "messages", "response")


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
        message = obj.message
        if message is None:
            return "– (stored through /v1)"
        conversation = message.conversation
        url = reverse("admin:conversations_conversation_change", args=[conversation.pk])
        return format_html('<a href="{}">{}</a> (message #{})', url, conversation.title, obj.message_id)

    @admin.display(description="transcript")
    def transcript(self, obj: StoredCompletion) -> str:
        response = obj.response if isinstance(obj.response, dict) else {}
        choices = [
            {
                "index": choice.get("index", i),
                "finish_reason": choice.get("finish_reason") or "",
                "message": transcript_message(choice.get("message") or {}),
            }
            for i, choice in enumerate(response.get("choices") or [])
            if isinstance(choice, dict)
        ]
        context = {
            "messages": [
                transcript_message(m) for m in (obj.messages if isinstance(obj.messages, list) else [obj.messages])
            ],
            "choices": choices,
            "usage": json_pretty(response["usage"]) if response.get("usage") else "",
            "latency_ms": obj.latency_ms,
            "status": obj.get_status_display(),
        }
        # An autoescaping template: every piece of model and user text is escaped.
        return render_to_string("admin/conversations/storedcompletion/transcript.html", context)

    @admin.display(description="request parameters")
    def request_json(self, obj: StoredCompletion) -> str:
        return format_html("<pre>{}</pre>", json_pretty(obj.request))

    @admin.display(description="response (raw)")
    def response_json(self, obj: StoredCompletion) -> str:
        return format_html("<pre>{}</pre>", json_pretty(obj.response))

    # Actions.

    @admin.action(description="Export selected as JSONL (fine-tuning)", permissions=["view"])
    def export_fine_tuning_jsonl(self, request: HttpRequest, queryset: QuerySet) -> StreamingHttpResponse:
        """One line per finished completion in OpenAI's fine-tuning format; "select all" exports the filtered list."""
        lines = afine_tuning_jsonl(queryset) if isinstance(request, ASGIRequest) else fine_tuning_jsonl(queryset)
        response = StreamingHttpResponse(lines, content_type="application/jsonl; charset=utf-8")
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = f'attachment; filename="stored-completions-{stamp}.jsonl"'
        return response
