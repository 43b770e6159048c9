"""``/api/v1/agent``: raw run status and the raw run stream, addressed by ``?runId=``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from agentyard.api import sse
from agentyard.api.auth import current_user, yard
from agentyard.core.errors import Forbidden, InvalidInput, NotFound

router = APIRouter(prefix="/api/v1/agent")


def _run_id(run_id: str | None) -> str:
    if run_id is None or not run_id.strip():
        raise InvalidInput("'runId' query parameter is required")
    return run_id.strip()


@router.get("/status")
async def agent_status(
    request: Request,
    runId: str | None = None,
    user: str = Depends(current_user),
) -> dict[str, Any]:
    run = await yard(request).service.find_run(_run_id(runId))
    if run is None or run.user_id != user:
        # Documented: an unknown run answers 200 with nulls.
        return {"runId": runId, "status": None, "assistantMessageId": None, "error": None}
    return {
        "runId": run.run_id,
        "status": run.status.value,
        "assistantMessageId": run.assistant_message_id,
        "error": run.error,
    }


@router.get("/stream")
async def agent_stream(
    request: Request,
    runId: str | None = None,
    after: int | None = None,
    user: str = Depends(current_user),
) -> Response:
    app = yard(request)
    run = await app.service.find_run(_run_id(runId))
    if run is None:
        raise NotFound(f"Task {runId} not found")
    if run.user_id != user:
        raise Forbidden()
    start = sse.resume_point(request, after)
    hello = {"type": "resume", "runId": run.run_id, "status": run.status.value, "after": start}
    return sse.stream(app.service, run, start, app.settings.keepalive_seconds, hello=hello)
