"""The client's errors: one class per status the API answers, each carrying its message."""

from __future__ import annotations

import httpx


class AgentyardError(Exception):
    """Anything the client raises."""


class ConnectionFailed(AgentyardError):
    """The server could not be reached (or a stream could not be resumed in time)."""


class ApiError(AgentyardError):
    """The server answered an error: ``status`` and the server's own ``message``."""

    status: int = 0

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    def __str__(self) -> str:
        return f"{self.message} (HTTP {self.status})"


class InvalidInput(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class PayloadTooLarge(ApiError):
    status = 413


class ServerError(ApiError):
    """A 5xx: the server failed; the request may or may not have taken effect."""

    status = 500


BY_STATUS: dict[int, type[ApiError]] = {
    cls.status: cls
    for cls in (InvalidInput, Unauthorized, Forbidden, NotFound, Conflict, PayloadTooLarge)
}


def error_for(status: int, body: bytes) -> ApiError:
    """The error of an HTTP answer: its class by status, its message from ``{"error"}``."""
    message = body.decode("utf-8", "replace").strip() or f"HTTP {status}"
    try:
        parsed = httpx.Response(status, content=body).json()
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
        message = parsed["error"]
    cls = BY_STATUS.get(status, ServerError if status >= 500 else ApiError)
    return cls(message, status)


def check(response: httpx.Response) -> httpx.Response:
    """``response`` if it succeeded (its body read), else its typed error."""
    if response.status_code >= 400:
        raise error_for(response.status_code, response.content)
    return response
