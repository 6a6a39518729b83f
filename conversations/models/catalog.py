"""The model catalog: providers, the models they serve, their deployments, aliases and prices."""

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from conversations.core.fields import EncryptedTextField


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
    ``deployments`` add more, tried in priority order when one fails (``providers.routes``).
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
    reasoning = models.BooleanField(default=False, help_text="A reasoning model: chats may set its reasoning_effort.")

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
            models.UniqueConstraint(fields=["is_default"], condition=Q(is_default=True), name="one_default_chat_model")
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
                condition=Q(input_per_million__gte=0)
                & Q(cached_input_per_million__gte=0)
                & Q(output_per_million__gte=0),
                name="prices_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model} from {self.effective_from:%Y-%m-%d}"
