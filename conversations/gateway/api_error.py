"""The error a /v1 call answers when it cannot give a completion, in OpenAI's shape with its status and
headers. Its own module because the whole gateway raises it, not only the request checks."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error answered in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON body OpenAI's SDKs parse into their exception classes."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
