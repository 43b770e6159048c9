"""The domain error tree. The API maps each class to one HTTP status.

AgentyardError
 ├── InvalidInput        400  bad request body or parameters
 ├── Unauthorized        401  no or unknown API key
 ├── Forbidden           403  the resource belongs to another user
 ├── NotFound            404
 ├── Conflict            409  e.g. an Idempotency-Key whose first request is still in flight
 ├── PayloadTooLarge     413
 ├── Unprocessable       422  e.g. an Idempotency-Key reused with another request
 └── TooManyRequests     429  a user's queue is full (``retry_after`` seconds)
"""

from __future__ import annotations


class AgentyardError(Exception):
    """Agentyard error."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "error").strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


class InvalidInput(AgentyardError):
    """Invalid request."""


class Unauthorized(AgentyardError):
    """Unauthorized"""


class Forbidden(AgentyardError):
    """Task belongs to a different user"""


class NotFound(AgentyardError):
    """Not found"""


class Conflict(AgentyardError):
    """Conflict"""


class PayloadTooLarge(AgentyardError):
    """Request body too large"""


class Unprocessable(AgentyardError):
    """Unprocessable request"""


class TooManyRequests(AgentyardError):
    """Too many requests"""

    def __init__(self, message: str | None = None, retry_after: int = 30) -> None:
        super().__init__(message)
        self.retry_after = retry_after
