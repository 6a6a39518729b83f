"""What users keep and share: folders, shared links and import runs."""

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from conversations.models.chats import Conversation


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
