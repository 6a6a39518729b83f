"""Data of chatweb: providers and the models they serve, conversations and their messages."""

from datetime import timedelta

from django.conf import settings
from django.core.files.storage import Storage, storages
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from .fields import EncryptedTextField


class SiteSettings(models.Model):
    """Site-wide switches an admin flips in the admin; a single row."""

    signups_open = models.BooleanField(
        default=False,
        help_text="Let anyone create an account on the sign-up page. "
        "Otherwise admins create users in the admin.",
    )
    ungrouped_all_models = models.BooleanField(
        default=True,
        help_text="Users in no group may use every enabled model. "
        "Untick to give them only the models granted to them directly.",
    )
    sharing_enabled = models.BooleanField(
        default=True,
        help_text="Let users share a conversation by a public read-only link. "
        "Turning it off makes every existing link answer 404 until it is on again.",
    )
    generate_titles = models.BooleanField(
        default=False,
        help_text="After a conversation's first reply, ask its model for a short title (counted as usage). "
        "Otherwise a conversation is titled by its first message.",
    )

    class Meta:
        verbose_name = verbose_name_plural = "site settings"

    def __str__(self) -> str:
        return "Site settings"

    @classmethod
    def load(cls) -> "SiteSettings":
        return cls.objects.get_or_create(pk=1)[0]


class Provider(models.Model):
    """An OpenAI-compatible endpoint chatweb calls: OpenAI, Ollama, vLLM, the local model."""

    name = models.CharField(max_length=100, unique=True)
    base_url = models.URLField(help_text="Up to and including /v1, e.g. https://api.openai.com/v1")
    api_key = EncryptedTextField(blank=True, help_text="Encrypted at rest with ENCRYPTION_KEY.")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class ChatModel(models.Model):
    """A model users pick by name, mapped to a provider and the provider's model id.

    That provider and id are the model's first deployment (priority 0, weight 1); its
    ``deployments`` add more, tried in priority order when one fails (``services.routing``).
    """

    name = models.CharField(max_length=200, unique=True, help_text="What users and /v1 call it.")
    display_name = models.CharField(max_length=200, blank=True)
    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="models")
    upstream_model = models.CharField(max_length=200, help_text="The model id sent to the provider.")
    enabled = models.BooleanField(default=True)
    is_default = models.BooleanField(default=False, help_text="Preselected for new conversations.")
    position = models.IntegerField(default=100, help_text="Lower comes first in the picker.")
    max_tokens = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="The longest reply in the chat, in tokens, sent to the provider as max_tokens. "
        "Blank leaves it to the provider. /v1 clients set their own.",
    )
    reasoning = models.BooleanField(
        default=False, help_text="A reasoning model: chats may set its reasoning_effort."
    )

    accepts_images = models.BooleanField(
        default=False,
        help_text="The model reads images (vision): attached images are sent to it as image_url parts. "
        "Otherwise sending one is refused before anything is sent.",
    )
    context_tokens = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="The model's context window in tokens. Given, a message whose documents do not fit "
        "is refused with the numbers; blank leaves it to the provider.",
    )

    class Meta:
        ordering = ["position", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="one_default_chat_model"
            )
        ]

    def __str__(self) -> str:
        return self.display_name or self.name

    @property
    def label(self) -> str:
        return self.display_name or self.name


class Deployment(models.Model):
    """A further provider serving a chat model, with the id it knows the model by.

    Lower priorities are tried first; among equal priorities (the model's own provider
    counts as priority 0, weight 1) the choice is weighted. ``rpm`` and ``tpm`` bound
    what chatweb sends it per minute: beyond them the next deployment is used.
    """

    model = models.ForeignKey(ChatModel, on_delete=models.CASCADE, related_name="deployments")
    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="deployments")
    upstream_model = models.CharField(max_length=200, help_text="The model id sent to this provider.")
    priority = models.PositiveSmallIntegerField(
        default=1, help_text="Lower is tried first; the model's own provider is 0."
    )
    weight = models.PositiveIntegerField(
        default=1, validators=[MinValueValidator(1)], help_text="Share of calls among equal priorities."
    )
    rpm = models.PositiveIntegerField(null=True, blank=True, help_text="Requests per minute at most.")
    tpm = models.PositiveIntegerField(null=True, blank=True, help_text="Tokens per minute at most.")
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["priority", "id"]

    def __str__(self) -> str:
        return f"{self.provider} / {self.upstream_model}"


class ModelAlias(models.Model):
    """Another name for a chat model, for /v1 clients (``default``, an old model's name)."""

    name = models.CharField(max_length=200, unique=True)
    model = models.ForeignKey(ChatModel, on_delete=models.CASCADE, related_name="aliases")

    class Meta:
        verbose_name_plural = "model aliases"

    def __str__(self) -> str:
        return self.name


class ReasoningEffort(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"


class ChatSettings(models.Model):
    """What steers a chat's replies: a system prompt and the sampling parameters sent with each turn.

    Blank parameters are left to the provider. ``services.chat_settings`` validates them.
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


class Folder(models.Model):
    """A user's named folder of conversations."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="folders")
    name = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [models.UniqueConstraint(fields=["user", "name"], name="one_folder_name_per_user")]

    def __str__(self) -> str:
        return self.name


class Conversation(ChatSettings):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
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
    folder = models.ForeignKey(
        Folder, null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations"
    )
    imported_from = models.CharField(
        max_length=20, blank=True, help_text="The export it was imported from (chatgpt, chatweb, openwebui)."
    )
    import_key = models.CharField(
        max_length=200, blank=True,
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


class _AttachmentStorage(Storage):
    """``STORAGES["attachments"]`` as it is configured when used (a setting changed later, in tests, applies)."""

    def __getattribute__(self, name: str):
        return getattr(storages["attachments"], name)


def _attachment_storage() -> Storage:
    return _AttachmentStorage()


def _attachment_path(instance: "Attachment", filename: str) -> str:
    """Where a file is kept: under its user, by a random name (never the name it was uploaded with)."""
    import secrets

    return f"{instance.user_id}/{secrets.token_hex(16)}.{instance.extension}"


class Attachment(models.Model):
    """A file a user attached to a message: an image for vision models or a document given as context.

    Uploaded before the message is sent (``message`` null until then), it then belongs to
    that message and goes wherever the message goes. Its type is what its content is, not
    what its name says. A document's text is extracted once, at upload, and kept here.
    """

    class Kind(models.TextChoices):
        IMAGE = "image"
        DOCUMENT = "document"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="attachments")
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.CASCADE, related_name="attachments"
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    name = models.CharField(max_length=255, help_text="The file's name, made safe to show.")
    content_type = models.CharField(max_length=100, help_text="Sniffed from the content.")
    file = models.FileField(storage=_attachment_storage, upload_to=_attachment_path, max_length=255)
    size = models.PositiveBigIntegerField(help_text="Bytes kept (after an image was re-encoded).")
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    text = models.TextField(blank=True, help_text="A document's text, as the model is given it.")
    tokens = models.PositiveIntegerField(default=0, help_text="The document's text in tokens (or the image's estimate).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["user", "message"], name="attachment_user_message")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_image(self) -> bool:
        return self.kind == self.Kind.IMAGE

    @property
    def extension(self) -> str:
        return EXTENSIONS.get(self.content_type, "bin")


EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "application/pdf": "pdf",
    "text/plain": "txt",
}


class SharedLink(models.Model):
    """A public read-only link to a snapshot of a conversation's current path, taken when it was shared.

    The snapshot holds only what the page shows (roles, text, model names): no usage, no user.
    Revoked links, and every link while sharing is off (SiteSettings), answer 404.
    """

    token = models.CharField(max_length=43, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="shared_links")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="shared_links")
    title = models.CharField(max_length=200)
    messages = models.JSONField(default=list, help_text="[{role, content, model}] of the path, oldest first.")
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.title

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class ImportRun(models.Model):
    """One import of an export file: its progress while it runs, its outcome after, and the file's
    SHA-256 so that importing the same file again is noticed."""

    class Status(models.TextChoices):
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="import_runs")
    filename = models.CharField(max_length=255, blank=True)
    sha256 = models.CharField(max_length=64)
    format = models.CharField(max_length=20, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    total = models.PositiveIntegerField(default=0, help_text="Entries in the file.")
    imported = models.PositiveIntegerField(default=0, help_text="Conversations imported so far.")
    duplicates = models.PositiveIntegerField(default=0, help_text="Conversations already imported before, skipped.")
    skipped = models.PositiveIntegerField(default=0, help_text="Entries that could not be read as conversations.")
    notes = models.TextField(blank=True, help_text="Why entries were skipped (the first few).")
    error = models.TextField(blank=True, help_text="Why the import stopped, when it failed.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "sha256"], name="import_user_file")]

    def __str__(self) -> str:
        return f"{self.filename or 'import'} ({self.status})"

    @property
    def is_stale(self) -> bool:
        """Still ``running`` but not heard of for two minutes: the process importing it stopped."""
        return self.status == self.Status.RUNNING and self.updated_at < timezone.now() - timedelta(minutes=2)


class ApiKey(models.Model):
    """A user's key for /v1. Only a SHA-256 of the key is kept; the key itself is shown once.

    Its scopes, set at creation: an expiry, the models it may call (none listed: all its
    user may use; always within the user's own access), a monthly budget and a
    requests-per-minute limit of its own (on top of the user's and their groups'), and
    ``read_only``: stored completions and models may be read, nothing created or changed.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, help_text="The key's first characters, to recognise it.")
    hashed = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Refused from this moment on (UTC).")
    allowed_models = models.ManyToManyField(
        "ChatModel", blank=True, related_name="+", help_text="The models it may call; none: all its user may use."
    )
    monthly_budget = models.DecimalField(
        max_digits=12, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(0)],
        help_text="USD per calendar month (UTC) this key may spend.",
    )
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    read_only = models.BooleanField(default=False, help_text="Reads stored completions and models; creates nothing.")

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def has_limits(self) -> bool:
        return self.monthly_budget is not None or self.requests_per_minute is not None


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
        default=list, blank=True,
        help_text="Deployments that failed before the one that answered: which, how and when.",
    )
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="stored_completions",
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
            models.Index(
                fields=["status", "created_at"], condition=~Q(status="completed"), name="stored_unsuccessful"
            ),
        ]

    def __str__(self) -> str:
        return self.id


class ModelPrice(models.Model):
    """What a model costs from a date on, in USD per million tokens. Reasoning tokens bill as output."""

    model = models.CharField(max_length=200, help_text="The chatweb model name it prices.")
    input_per_million = models.DecimalField(max_digits=12, decimal_places=6)
    cached_input_per_million = models.DecimalField(max_digits=12, decimal_places=6)
    output_per_million = models.DecimalField(max_digits=12, decimal_places=6)
    effective_from = models.DateTimeField(default=timezone.now)
    source = models.CharField(max_length=200, blank=True, help_text="Where the figures come from.")

    class Meta:
        ordering = ["model", "-effective_from"]
        constraints = [
            models.UniqueConstraint(fields=["model", "effective_from"], name="one_price_per_model_and_date"),
            models.CheckConstraint(
                condition=Q(input_per_million__gte=0) & Q(cached_input_per_million__gte=0) & Q(output_per_million__gte=0),
                name="prices_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model} from {self.effective_from:%Y-%m-%d}"


class UserLimits(models.Model):
    """An admin's limits for one user; blank fields fall back to the site-wide defaults in settings."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="limits")
    monthly_budget = models.DecimalField(
        max_digits=12, decimal_places=2, null=True, blank=True, help_text="USD per calendar month (UTC)."
    )
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_minute = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        verbose_name = verbose_name_plural = "user limits"

    def __str__(self) -> str:
        return f"Limits of {self.user}"


class GroupPolicy(models.Model):
    """What a Django group grants its members: the models they may use, a monthly budget they
    share, and default per-user limits (a member's own limits win; among several groups the
    most generous default counts). A group without a policy grants every model and no limits."""

    group = models.OneToOneField("auth.Group", on_delete=models.CASCADE, related_name="policy")
    all_models = models.BooleanField(
        default=True, help_text="Members may use every enabled model. Untick to allow only the models below."
    )
    allowed_models = models.ManyToManyField(
        ChatModel, blank=True, related_name="group_policies", help_text="Used only when “all models” is unticked."
    )
    monthly_budget = models.DecimalField(
        max_digits=12, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(0)],
        help_text="USD per calendar month (UTC) that all members share. Blank: no group budget.",
    )
    member_monthly_budget = models.DecimalField(
        max_digits=12, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(0)],
        help_text="Each member's own budget (USD per month) unless the user has one set.",
    )
    member_requests_per_minute = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    member_tokens_per_minute = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])

    class Meta:
        verbose_name = "group policy"
        verbose_name_plural = "group policies"

    def __str__(self) -> str:
        return f"Policy of {self.group}"


class ModelGrant(models.Model):
    """A model granted to one user directly, on top of what their groups allow."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="model_grants")
    model = models.ForeignKey(ChatModel, on_delete=models.CASCADE, related_name="grants")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "model"], name="one_grant_per_user_and_model")]

    def __str__(self) -> str:
        return f"{self.model} for {self.user}"


class UserPreferences(models.Model):
    """What a user chose for the site and for new chats, kept on the server so every device agrees."""

    class Theme(models.TextChoices):
        SYSTEM = "system", "System"
        LIGHT = "light", "Light"
        DARK = "dark", "Dark"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="preferences")
    theme = models.CharField(
        max_length=10, choices=Theme.choices, default=Theme.SYSTEM, help_text="System follows the browser."
    )
    system_prompt = models.TextField(
        blank=True, help_text="Put in every new chat's system prompt, e.g. how to address you."
    )
    default_preset = models.ForeignKey(
        "Preset", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="What a new chat starts from.",
    )

    class Meta:
        verbose_name = verbose_name_plural = "user preferences"

    def __str__(self) -> str:
        return f"Preferences of {self.user}"


class Preset(ChatSettings):
    """A named system prompt with a model and parameters to start chats from.

    A user's own, or, with no user, published site-wide by an admin for everyone.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="presets",
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
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="usage_records",
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

    # Set by usage_reserve for a user with per-minute limits (services.usage.RateWindow); not stored.
    rate_windows: tuple = ()

    def __str__(self) -> str:
        return f"{self.user} {self.model} {self.cost} USD"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class SsoIdentity(models.Model):
    """A user's account at the identity provider: its issuer and ``sub`` claim, the only key single sign-on
    links by (an email address can change hands; a subject never does)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sso_identities")
    issuer = models.CharField(max_length=255)
    subject = models.CharField(max_length=255, help_text="The provider's `sub` claim for this user.")
    created_at = models.DateTimeField(default=timezone.now)
    last_login_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "single sign-on identity"
        verbose_name_plural = "single sign-on identities"
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="sso_identity_unique")]

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"
