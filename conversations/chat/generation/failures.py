"""What a person is told when a reply fails."""

from __future__ import annotations

from conversations.core.errors import (
    ChatwebError,
    DeploymentsExhausted,
    ModelUnavailable,
    UpstreamFailed,
)
from conversations.providers.completions import UpstreamConnectionError, UpstreamTimeout


def error_describe(exc: ChatwebError, *, local: bool = False) -> str:
    """A sentence a person understands, for a failed reply; ``local``: the bundled model's, which restarts by itself."""
    if isinstance(exc, ModelUnavailable):
        return exc.message
    if isinstance(exc, DeploymentsExhausted):
        return "Every provider of this model failed just now. Your message is kept; regenerate to try again."
    if not isinstance(exc, UpstreamFailed):
        return exc.message
    if isinstance(exc, UpstreamConnectionError) and local:
        if exc.answered:
            return "The local model stopped while answering. It is restarting; regenerate to try again."
        return "The local model is not running right now; it restarts by itself. Regenerate in a few seconds."
    if isinstance(exc, UpstreamTimeout):
        return f"The model took too long to answer. {exc.message}"
    if isinstance(exc, UpstreamConnectionError):
        return f"{exc.message} Check that the model's server is running."
    if exc.status in (401, 403):
        return f"The provider refused chatweb's API key ({exc.message}). An admin needs to update the provider's key."
    if exc.status == 429:
        return f"The provider is rate limiting requests ({exc.message}). Wait a moment and regenerate."
    if exc.status == 404:
        return f"The provider does not know this model ({exc.message})."
    if exc.status and exc.status < 500:
        return f"The provider rejected the request: {exc.message}"
    return f"The provider failed: {exc.message}"
