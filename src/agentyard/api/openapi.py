"""The OpenAPI document and the /docs and /redoc pages, served without any CDN.

The routes parse their bodies themselves (bad input is a 400 naming the field), so FastAPI
would document no request body, declare 422s the server never sends, and know no response
model. This module writes those parts of the document from the client's own models
(``agentyard.client.bodies`` and ``.models``): what is documented is what the client speaks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from agentyard.client import bodies
from agentyard.client import models as m

ASSETS = Path(fastapi_offline.__file__).parent / "static"
"""Swagger UI (Apache-2.0) and ReDoc (MIT), as shipped by fastapi-offline (MIT)."""
ASSETS_URL = "/docs-assets"

ERRORS = {
    400: "Bad input: nothing was changed.",
    401: "No API key, or an unknown or revoked one.",
    403: "The run, group or webhook belongs to another user (git: no GitHub token stored).",
    404: "No such run, group, file or route.",
    409: "Conflict with the current state (e.g. an Idempotency-Key still in flight).",
    413: "The request body is too large.",
    422: "An Idempotency-Key reused with a different request.",
    429: "Too many of the user's runs are queued (see Retry-After).",
}
IDEMPOTENT = {
    ("post", "/api/v1/tasks"),
    ("post", "/api/v1/tasks/{run_id}/continue"),
}

SSE = {"text/event-stream": {"schema": {"type": "string"}}}
BINARY = {"schema": {"type": "string", "format": "binary"}}

# (method, path): (summary, request body model, response model or content, extra error codes)
Op = tuple[str, type[BaseModel] | None, type[BaseModel] | dict[str, Any] | None, tuple[int, ...]]
OPERATIONS: dict[tuple[str, str], Op] = {
    ("post", "/api/v1/tasks"): (
        "Create a task",
        bodies.CreateTask,
        m.CreatedTask,
        (409, 422, 429),
    ),
    ("get", "/api/v1/tasks"): ("The caller's runs, newest first", None, m.TaskList, ()),
    ("get", "/api/v1/tasks/{run_id}"): ("The run with its chat's messages", None, m.Task, ()),
    ("patch", "/api/v1/tasks/{run_id}"): (
        "Cancel and/or rename",
        bodies.UpdateTask,
        m.UpdateResult,
        (),
    ),
    ("get", "/api/v1/tasks/{run_id}/status"): ("Status and progress", None, m.RunStatus, ()),
    ("post", "/api/v1/tasks/{run_id}/continue"): (
        "A follow-up run on the same chat (queued behind a run still active)",
        bodies.ContinueTask,
        m.ContinuedTask,
        (409, 422, 429),
    ),
    ("get", "/api/v1/tasks/{run_id}/diff"): ("The run's diff and statistics", None, m.Diff, ()),
    ("get", "/api/v1/tasks/{run_id}/logs"): ("The run's stored events", None, m.Logs, ()),
    ("get", "/api/v1/tasks/{run_id}/logs/stream"): (
        "SSE: replay, then live, until finish (Last-Event-ID resumes)",
        None,
        SSE,
        (),
    ),
    ("get", "/api/v1/agent/stream"): ("SSE with a leading resume event", None, SSE, ()),
    ("get", "/api/v1/agent/status"): (
        "The raw status (nulls for an unknown run)",
        None,
        m.RawStatus,
        (),
    ),
    ("get", "/api/v1/tasks/{run_id}/files"): ("The workspace's files", None, m.FileList, ()),
    ("get", "/api/v1/tasks/{run_id}/files/download"): (
        "The workspace as an archive (no .git)",
        None,
        {"application/zip": BINARY, "application/gzip": BINARY},
        (),
    ),
    ("post", "/api/v1/tasks/{run_id}/files/upload"): (
        "Upload files (multipart 'file' fields, optional 'path' directory)",
        None,
        m.UploadResult,
        (),
    ),
    ("get", "/api/v1/tasks/{run_id}/files/{path}"): ("Read a file", None, m.FileContent, ()),
    ("put", "/api/v1/tasks/{run_id}/files/{path}"): (
        "Write a file",
        bodies.WriteFile,
        m.FileChange,
        (),
    ),
    ("delete", "/api/v1/tasks/{run_id}/files/{path}"): ("Delete a file", None, m.FileChange, ()),
    ("get", "/api/v1/groups/{group_id}"): ("A multi-agent task's runs", None, m.Group, ()),
    ("patch", "/api/v1/groups/{group_id}"): (
        "Cancel every active run",
        bodies.CancelGroup,
        m.Group,
        (),
    ),
    ("get", "/api/v1/groups/{group_id}/compare"): (
        "The runs' diffs side by side",
        None,
        m.Comparison,
        (),
    ),
    ("post", "/api/v1/groups/{group_id}/select"): (
        "Choose the winner (409 if already chosen)",
        bodies.SelectWinner,
        m.Group,
        (409,),
    ),
    ("post", "/api/v1/git/config"): ("Connect GitHub", bodies.ConnectGit, m.GitConnected, ()),
    ("get", "/api/v1/git/config"): ("The connected account", None, m.GitAccount, ()),
    ("get", "/api/v1/git/status"): ("Live token check", None, m.GitAccount, ()),
    ("delete", "/api/v1/git/clean"): ("Forget the stored token", None, m.Done, ()),
    ("get", "/api/v1/git/repos"): ("The account's repositories", None, m.Repos, (403,)),
    ("get", "/api/v1/git/branches"): ("A repository's branches", None, m.Branches, (403,)),
    ("get", "/api/v1/agents"): ("The runtimes and whether each is configured", None, m.Agents, ()),
    ("post", "/api/v1/webhooks"): (
        "Register a webhook endpoint (201, with its secret shown once)",
        bodies.CreateWebhook,
        m.CreatedWebhook,
        (),
    ),
    ("get", "/api/v1/webhooks"): ("The caller's webhook endpoints", None, m.WebhookList, ()),
    ("get", "/api/v1/webhooks/{endpoint_id}"): (
        "A webhook endpoint",
        None,
        m.WebhookEndpoint,
        (),
    ),
    ("delete", "/api/v1/webhooks/{endpoint_id}"): (
        "Delete an endpoint and its deliveries",
        None,
        m.WebhookDeleted,
        (),
    ),
    ("get", "/api/v1/webhooks/{endpoint_id}/deliveries"): (
        "Deliveries with their attempts and responses, newest first",
        None,
        m.WebhookDeliveries,
        (),
    ),
    ("post", "/api/v1/webhooks/{endpoint_id}/deliveries/{delivery_id}/redeliver"): (
        "Attempt a delivery again now, whatever its state (no body)",
        None,
        m.WebhookDelivery,
        (),
    ),
    ("get", "/healthz"): ("Liveness", None, m.Health, ()),
    ("get", "/readyz"): (
        "Readiness: 503 while the database, the queue or the schema is not right",
        None,
        {"application/json": {"schema": {"type": "object"}}},
        (),
    ),
    ("get", "/metrics"): (
        "Prometheus metrics (401 without the AGENTYARD_METRICS_TOKEN, when one is set)",
        None,
        {"text/plain": {"schema": {"type": "string"}}},
        (401,),
    ),
}

NOT_READY = {
    "description": "Not ready: `problems` says why (the same body as 200).",
    "content": {"application/json": {"schema": {"type": "object"}}},
}

SUCCESS = {
    ("post", "/api/v1/webhooks"): "201",
}
"""Operations that answer something other than 200 on success."""

TAGS = ("tasks", "files", "groups", "agent", "git", "agents", "webhooks")


def _tag(path: str) -> str:
    if "/files" in path:
        return "files"
    return next((t for t in TAGS if path.startswith(f"/api/v1/{t}")), "server")


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _schemas() -> dict[str, Any]:
    """Every body and response model, and what they refer to, as components."""
    wanted: list[tuple[type[BaseModel], Any]] = [(b, "validation") for b in bodies.ALL]
    for _, _body, answer, _ in OPERATIONS.values():
        if isinstance(answer, type):
            wanted.append((answer, "serialization"))
    wanted.append((m.ErrorBody, "serialization"))
    unique = list(dict.fromkeys(wanted))
    _, top = models_json_schema(unique, ref_template="#/components/schemas/{model}", by_alias=True)
    defs: dict[str, Any] = top.get("$defs", {})
    return defs


def _operation(op: dict[str, Any], method: str, path: str) -> None:
    spec = OPERATIONS.get((method, path))
    authed = path.startswith("/api/v1/")
    codes = ({400, 413} if method in ("post", "put", "patch") else {400}) if authed else set()
    if authed:
        codes |= {401}
    if "{" in path or path.startswith("/api/v1/agent/"):
        codes |= {403, 404}
    responses: dict[str, Any] = {}
    if spec is not None:
        summary, body, answer, extra = spec
        op["summary"] = summary
        codes |= set(extra)
        if body is not None:
            example = (body.model_json_schema().get("examples") or [None])[0]
            media: dict[str, Any] = {"schema": _ref(body)}
            if example is not None:
                media["example"] = example
            op["requestBody"] = {"required": True, "content": {"application/json": media}}
        if path.endswith("/files/upload"):
            op["requestBody"] = _multipart()
        ok = SUCCESS.get((method, path), "201" if path.endswith("/files/upload") else "200")
        if isinstance(answer, type):
            content = {"application/json": {"schema": _ref(answer)}}
            responses[ok] = {"description": answer.__doc__ or "OK", "content": content}
        elif answer is not None:
            responses[ok] = {"description": "OK", "content": answer}
        if answer is SSE:
            responses["204"] = {"description": "The run ended and the client holds its last event."}
    else:
        responses["200"] = op.get("responses", {}).get("200", {"description": "OK"})
    for code in sorted(codes):
        error = {"application/json": {"schema": _ref(m.ErrorBody)}}
        responses[str(code)] = {"description": ERRORS[code], "content": error}
    if (method, path) in IDEMPOTENT:
        op.setdefault("parameters", []).append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "Retry safely: the same key and body replay the first response "
                "(with `Idempotent-Replayed: true`); kept 24 hours, per user.",
                "schema": {"type": "string", "maxLength": 255},
            }
        )
    if path == "/readyz":
        responses["503"] = NOT_READY
    op["responses"] = responses
    op["tags"] = [_tag(path)]
    op["security"] = [{"bearerAuth": []}] if authed else []


def _multipart() -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {
            "file": {"type": "array", "items": {"type": "string", "format": "binary"}},
            "path": {"type": "string", "description": "Directory in the workspace."},
        },
        "required": ["file"],
    }
    return {"required": True, "content": {"multipart/form-data": {"schema": schema}}}


def document(app: FastAPI) -> dict[str, Any]:
    """The whole OpenAPI document of ``app``."""
    spec = get_openapi(
        title=app.title,
        version=app.version,
        description=(
            "Agentyard's Agent API v1: coding agents as asynchronous tasks. Every request "
            "carries `Authorization: Bearer <key>` (`agentyard keys create`, or the local "
            'server\'s `.agentyard/admin.key`); every error is `{"error": "..."}`.'
        ),
        routes=app.routes,
    )
    for path, item in spec.get("paths", {}).items():
        for method, op in item.items():
            _operation(op, method, path)
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas.update(_schemas())
    components["schemas"] = dict(sorted(schemas.items()))
    components["securitySchemes"] = {
        "bearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "description": "An Agentyard API key.",
        }
    }
    return spec


def install(app: FastAPI) -> None:
    """The document at /openapi.json (built once), /docs and /redoc from packaged assets."""
    cached: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not cached:
            cached.update(document(app))
        return cached

    app.openapi = openapi  # type: ignore[method-assign]
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{app.title} - API",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
            swagger_ui_parameters={"persistAuthorization": True},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title=f"{app.title} - API",
            redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
