"""The single mapping from domain errors to HTTP responses: ``{"error": "..."}``."""

from __future__ import annotations

import sqlalchemy.exc as sa_exc
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import Scope

from agentyard.core import errors
from agentyard.store.faults import (
    DISK_FULL,
    UNAVAILABLE,
    DatabaseFault,
    is_disk_full,
    is_transient,
    public_message,
)

log = structlog.get_logger(__name__)

_RETRY_AFTER = 5
_RETRY_AFTER_DISK_FULL = 30

STATUS: dict[type[errors.AgentyardError], int] = {
    errors.InvalidInput: 400,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.PayloadTooLarge: 413,
    errors.Unprocessable: 422,
    errors.TooManyRequests: 429,
}


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def unavailable(exc: BaseException) -> JSONResponse:
    """503 with ``Retry-After``: the request may succeed once the database is back (or
    the disk has room); reads go on being served meanwhile."""
    full = is_disk_full(exc)
    response = error_response(503, DISK_FULL if full else UNAVAILABLE + "; try again shortly")
    response.headers["Retry-After"] = str(_RETRY_AFTER_DISK_FULL if full else _RETRY_AFTER)
    return response


def _validation_message(exc: RequestValidationError) -> str:
    problems = []
    for item in exc.errors():
        where = ".".join(str(p) for p in item.get("loc", ()) if p not in ("query", "body", "path"))
        problems.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
    return "invalid request: " + "; ".join(problems)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """The methods some route takes at the request's path. The framework's own ``Allow``
    names only the first route it matched, though a path (``/api/v1/tasks``: GET and POST)
    may be served by several."""
    allowed = []
    for method in _METHODS:
        probe: Scope = {
            "type": "http",
            "method": method,
            "path": scope["path"],
            "root_path": scope.get("root_path", ""),
            "headers": [],
            "query_string": b"",
        }
        if any(route.matches(probe)[0] is Match.FULL for route in app.router.routes):
            allowed.append(method)
    return allowed


def install(app: FastAPI) -> None:
    async def on_domain(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, errors.AgentyardError)
        status = next((code for cls, code in STATUS.items() if isinstance(exc, cls)), 500)
        response = error_response(status, exc.message)
        if isinstance(exc, errors.TooManyRequests):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(400, _validation_message(exc))

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        message = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404 and message == "Not Found":
            message = "Not found"
        response = error_response(exc.status_code, message)
        # e.g. a 405's Allow: the framework's headers are part of the answer.
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:
            response.headers["Allow"] = ", ".join(allowed_methods(app, request.scope))
        return response

    async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        # Never the exception's text: SQLAlchemy's carries the SQL and its parameters.
        if is_disk_full(exc) or is_transient(exc):
            log.warning("request failed on the database", error=public_message(exc))
            return unavailable(exc)
        log.error("request failed", error=public_message(exc), exc_info=exc)
        return error_response(500, "internal error")

    app.add_exception_handler(errors.AgentyardError, on_domain)
    # Handled as such, database errors never reach the server-error middleware (which would
    # log a traceback for each request an outage fails); anything else still gets JSON.
    app.add_exception_handler(sa_exc.SQLAlchemyError, on_unexpected)
    app.add_exception_handler(DatabaseFault, on_unexpected)
    app.add_exception_handler(Exception, on_unexpected)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
