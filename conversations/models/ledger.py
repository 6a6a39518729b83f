"""The ledger: every stored completion and usage record."""

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from conversations.models.access import ApiKey
from conversations.models.chats import Message


class StoredCompletion(models.Model):
    """A completion kept for review: a /v1 request with ``store: true``, or a turn of the chat UI.

    /v1 ones are served back by the stored-completions API; chat turns link to their
    message and are reviewed in the admin.
    """

    class Status(models.TextChoices):
        COMPLETED = "completed"
        ERROR = "error"
        STOPPED = "stopped"
        INTERRUPTED = "interrupted"

    class Source(models.TextChoices):
        API = "api", "API"
        CHAT = "chat", "Chat UI"

    id = models.CharField(max_length=64, primary_key=True, help_text="The chatcmpl- id the client saw.")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="stored_completions")
    api_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="stored_completions"
    )
    model = models.CharField(max_length=200, help_text="The chatweb model name the client asked for.")
    provider = models.CharField(max_length=100, blank=True)
    upstream_model = models.CharField(max_length=200, blank=True)
    request = models.JSONField(default=dict, help_text="The request's parameters except its messages.")
    messages = models.JSONField(default=list, help_text="The input messages.")
    response = models.JSONField(default=dict, help_text="The chat.completion as the client received it.")
    metadata = models.JSONField(default=dict, blank=True)
    prompt_tokens = models.IntegerField(null=True, blank=True)
    completion_tokens = models.IntegerField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.COMPLETED)
    latency_ms = models.IntegerField(null=True, blank=True)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.API)
    attempts = models.JSONField(
        default=list,
        blank=True,
        help_text="Deployments that failed before the one that answered: which, how and when.",
    )
    message = models.ForeignKey(
        Message,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="stored_completions",
        help_text="The chat reply it wrote; a continued reply has one per call.",
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        indexes = [
            models.Index(fields=["user", "source", "created_at", "id"], name="stored_user_created"),
            models.Index(fields=["user", "source", "model", "created_at", "id"], name="stored_user_model_created"),
            # The admin's review list: newest first, by model, and the failures.
            models.Index(fields=["created_at", "id"], name="stored_created"),
            models.Index(fields=["model", "created_at"], name="stored_model_created"),
            models.Index(fields=["status", "created_at"], condition=~Q(status="completed"), name="stored_unsuccessful"),
        ]

    def __str__(self) -> str:
        return self.id


class UsageRecord(models.Model):
    """One completion's usage and cost: the ledger every total is summed from.

    A record starts ``reserved`` with an estimate before the provider is called (so
    concurrent requests cannot overspend a budget) and is ``settled`` to the real
    counts and cost when the completion ends, however it ends.
    """

    class State(models.TextChoices):
        RESERVED = "reserved"
        SETTLED = "settled"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="usage")
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="usage")
    message = models.ForeignKey(
        Message,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="usage_records",
        help_text="The chat reply it was for; a continued reply has one per call.",
    )
    stored_completion = models.ForeignKey(
        StoredCompletion, null=True, blank=True, on_delete=models.SET_NULL, related_name="usage"
    )
    model = models.CharField(max_length=200)
    provider = models.CharField(max_length=100, blank=True, help_text="The provider that answered.")
    upstream_model = models.CharField(max_length=200, blank=True, help_text="Its id for the model.")
    state = models.CharField(max_length=10, choices=State.choices, default=State.RESERVED)
    prompt_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    reasoning_tokens = models.PositiveIntegerField(default=0)
    estimated = models.BooleanField(default=False, help_text="Counted by chatweb: the provider sent no usage.")
    priced = models.BooleanField(default=True, help_text="False when the model had no price: cost 0, not a guess.")
    input_per_million = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    cached_input_per_million = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    output_per_million = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=8, default=0, help_text="USD")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["user", "created_at"], name="usage_user_created"),
            models.Index(fields=["model", "created_at"], name="usage_model_created"),
            models.Index(fields=["created_at"], name="usage_created"),
        ]

    # Set by usage_reserve for a user with per-minute limits (ledger.usage.RateWindow, a room above this
    # one, hence Any); not stored.
    rate_windows: tuple[Any, ...] = ()

    def __str__(self) -> str:
        return f"{self.user} {self.model} {self.cost} USD"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens
