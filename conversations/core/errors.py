"""What can go wrong with a completion, in chatweb's own words: no HTTP here.

Services raise these; ``gateway.errors`` maps them to OpenAI's error shapes on /v1 and the
chat turns them into notices. ``UpstreamFailed`` carries what a provider answered
(its status, type and code): facts about the provider, passed on as they came.
"""

from __future__ import annotations

from decimal import Decimal


class ChatwebError(Exception):
    """A failure a person can be told about; ``message`` says it in a sentence."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ChatwebError):
    """The caller sent something that cannot be used; ``param`` names it."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


class NotFound(ChatwebError):
    """The thing asked for does not exist, or belongs to someone else."""


class ModelUnavailable(NotFound):
    """No enabled model of that name (or it was turned off since)."""

    def __init__(self, message: str, *, name: str) -> None:
        super().__init__(message)
        self.name = name


class KeyExpired(ChatwebError):
    """An API key past the expiry set at its creation."""


class ScopeMissing(ChatwebError):
    """An API key whose scopes do not cover the request (a read-only key asked to create or change)."""


class QuotaExceeded(ChatwebError):
    """A budget or rate limit says no. ``kind`` is ``budget``, ``requests`` or ``tokens``."""

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        retry_after: int | None = None,
        limit: int | Decimal | None = None,
        remaining: int | Decimal | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after
        self.limit = limit
        self.remaining = remaining


class RateLimited(QuotaExceeded):
    """A requests- or tokens-per-minute limit says no, for ``retry_after`` seconds."""


class UpstreamFailed(ChatwebError):
    """A provider failed, in OpenAI's error vocabulary (``status`` is the provider's, when it answered)."""

    default_status: int | None = None
    default_type = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status if status is not None else self.default_status
        self.type = type or self.default_type
        self.code = code
        self.param = param
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, type={self.type!r}, message={self.message!r})"


class DeploymentsExhausted(UpstreamFailed):
    """Every deployment of a model failed (or is cooling down after failing): the model is out for now."""

    default_type = "service_unavailable"


class SsoFailed(ChatwebError):
    """Single sign-on could not be completed: the provider is unreachable, or what it sent was refused."""


class SharingOff(ChatwebError):
    """An admin turned sharing off for the site."""
