"""Conversations, their tree of messages, and the chat settings they share with presets."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from conversations.models.catalog import ChatModel


class ReasoningEffort(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"


class ChatSettings(models.Model):
    """What steers a chat's replies: a system prompt and the sampling parameters sent with each turn.

    Blank parameters are left to the provider. ``chat.settings`` validates them.
    """

    system_prompt = models.TextField(blank=True)
    temperature = models.FloatField(null=True, blank=True, help_text="0 to 2.")
    top_p = models.FloatField(null=True, blank=True, help_text="0 to 1.")
    max_tokens = models.PositiveIntegerField(
        null=True, blank=True, help_text="The longest reply, at most the model's own limit."
    )
    reasoning_effort = models.CharField(
        max_length=10, blank=True, choices=ReasoningEffort.choices, help_text="Reasoning models only."
    )

    class Meta:
        abstract = True


class Conversation(ChatSettings):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200, default="New chat")
    model = models.ForeignKey(ChatModel, null=True, blank=True, on_delete=models.SET_NULL)
    current_leaf = models.ForeignKey(
        "Message",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The last message of the branch shown: the path from the root to it is what the model is sent.",
    )
    pinned = models.BooleanField(default=False, help_text="Listed above the others in the sidebar.")
    archived = models.BooleanField(default=False, help_text="Hidden from the sidebar; listed on the Archived page.")
    folder = models.ForeignKey("Folder", null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations")
    imported_from = models.CharField(
        max_length=20, blank=True, help_text="The export it was imported from (chatgpt, chatweb, openwebui)."
    )
    import_key = models.CharField(
        max_length=200,
        blank=True,
        help_text="The export's own id for it: importing the same conversation again skips it.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["user", "-updated_at"]),
            # The sidebar's pages: a user's unarchived conversations, newest activity first.
            models.Index(fields=["user", "archived", "pinned", "-updated_at", "-id"], name="conversation_sidebar"),
            models.Index(fields=["user", "import_key"], condition=~Q(import_key=""), name="conversation_import_key"),
        ]

    def __str__(self) -> str:
        return self.title


class Message(models.Model):
    class Role(models.TextChoices):
        SYSTEM = "system"
        USER = "user"
        ASSISTANT = "assistant"

    class Status(models.TextChoices):
        STREAMING = "streaming"
        COMPLETE = "complete"
        STOPPED = "stopped"
        ERROR = "error"
        INTERRUPTED = "interrupted"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="children",
        help_text="The message this one follows; none for a conversation's first. Siblings are branches.",
    )
    role = models.CharField(max_length=20, choices=Role.choices)
    content = models.TextField(blank=True)
    content_html = models.TextField(
        blank=True, editable=False, help_text="The finished reply's Markdown, rendered and sanitised once."
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.COMPLETE)
    error = models.TextField(blank=True, help_text="What went wrong, as shown to the user.")
    finish_reason = models.CharField(max_length=40, blank=True)
    model_name = models.CharField(max_length=200, blank=True, help_text="The model the user picked.")
    upstream_model = models.CharField(max_length=200, blank=True, help_text="As the provider named it.")
    prompt_tokens = models.IntegerField(null=True, blank=True)
    completion_tokens = models.IntegerField(null=True, blank=True)
    usage_estimated = models.BooleanField(default=False)
    imported = models.BooleanField(
        default=False, help_text="Brought in from an export: never billed, never a stored completion."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["conversation", "created_at"]),
            # Search's newest-first pages: for a common word, walking this finds a page in a few rows.
            models.Index(fields=["created_at", "id"], name="message_created"),
            models.Index(fields=["status"], condition=Q(status="streaming"), name="message_streaming"),
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:40]}"

    @property
    def is_streaming(self) -> bool:
        return self.status == self.Status.STREAMING


class Preset(ChatSettings):
    """A named system prompt with a model and parameters to start chats from.

    A user's own, or, with no user, published site-wide by an admin for everyone.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="presets",
        help_text="Blank: published site-wide, for every user.",
    )
    name = models.CharField(max_length=100)
    model = models.ForeignKey(
        ChatModel, null=True, blank=True, on_delete=models.SET_NULL, help_text="Blank: the default model."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    @property
    def site_wide(self) -> bool:
        return self.user_id is None
