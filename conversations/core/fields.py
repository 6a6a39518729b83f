"""A text field encrypted at rest, for provider API keys."""

import base64
import hashlib
from typing import TYPE_CHECKING, Any

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.expressions import Expression

PREFIX = "enc:v1:"


def _fernet() -> Fernet:
    """Fernet keyed from ENCRYPTION_KEY (or, when that is unset, SECRET_KEY)."""
    secret = settings.ENCRYPTION_KEY or settings.SECRET_KEY
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest()))


if TYPE_CHECKING:  # Django's fields take no type arguments at run time; django-stubs' do.
    _TextField = models.TextField[str, str]
else:
    _TextField = models.TextField


class EncryptedTextField(_TextField):
    """Stored as ``enc:v1:<Fernet token>``; reads give back the plain text.

    A value written before encryption existed is read as it is and encrypted on its next save.
    """

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if not value:
            return value
        return PREFIX + _fernet().encrypt(value.encode()).decode()

    def from_db_value(self, value: str | None, expression: Expression, connection: BaseDatabaseWrapper) -> str | None:
        if not value or not value.startswith(PREFIX):
            return value
        try:
            return _fernet().decrypt(value[len(PREFIX) :].encode()).decode()
        except InvalidToken:
            raise ValueError(
                "A stored provider key cannot be decrypted: ENCRYPTION_KEY (or SECRET_KEY) changed."
            ) from None
