"""Files attached to messages, and where they are stored."""

from typing import Any

from django.conf import settings
from django.core.files.storage import Storage, storages
from django.db import models

from conversations.models.chats import Message


class _AttachmentStorage(Storage):
    """``STORAGES["attachments"]`` as it is configured when used (a setting changed later, in tests, applies)."""

    def __getattribute__(self, name: str) -> Any:
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
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.CASCADE, related_name="attachments")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    name = models.CharField(max_length=255, help_text="The file's name, made safe to show.")
    content_type = models.CharField(max_length=100, help_text="Sniffed from the content.")
    file = models.FileField(storage=_attachment_storage, upload_to=_attachment_path, max_length=255)
    size = models.PositiveBigIntegerField(help_text="Bytes kept (after an image was re-encoded).")
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    text = models.TextField(blank=True, help_text="A document's text, as the model is given it.")
    tokens = models.PositiveIntegerField(
        default=0, help_text="The document's text in tokens (or the image's estimate)."
    )
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
