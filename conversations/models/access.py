"""Who may do what: site settings, API keys, limits, groups' policies, grants, preferences, SSO identities."""

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

from conversations.models.catalog import ChatModel


class SiteSettings(models.Model):
    """Site-wide switches an admin flips in the admin; a single row."""

    signups_open = models.BooleanField(
        default=False,
        help_text="Let anyone create an account on the sign-up page. Otherwise admins create users in the admin.",
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
        ChatModel, blank=True, related_name="+", help_text="The models it may call; none: all its user may use."
    )
    monthly_budget = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="USD per calendar month (UTC) this key may spend.",
    )
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    read_only = models.BooleanField(default=False, help_text="Reads stored completions and models; creates nothing.")

    # Type only: the ids of allowed_models, set when the key authenticates (accounts.api_keys) or first
    # checked (accounts.access.key_model_ids); not stored.
    model_ids: frozenset[int]

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
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text="USD per calendar month (UTC) that all members share. Blank: no group budget.",
    )
    member_monthly_budget = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
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
        "Preset",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="What a new chat starts from.",
    )

    class Meta:
        verbose_name = verbose_name_plural = "user preferences"

    def __str__(self) -> str:
        return f"Preferences of {self.user}"


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
