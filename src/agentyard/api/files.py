"""``/api/v1/tasks/{runId}/files``: the run's workspace files."""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from agentyard.api.auth import current_user, yard
from agentyard.api.body import json_object, optional_str, upload_body
from agentyard.core.errors import InvalidInput, NotFound
from agentyard.workspace import files

router = APIRouter(prefix="/api/v1/tasks/{run_id}/files")

T = TypeVar("T")


async def _fs(call: Callable[..., T], *args: Any) -> T:
    """File work off the event loop (runs and streams go on); an OS refusal is a 400."""
    try:
        return await asyncio.to_thread(call, *args)
    except OSError as exc:
        raise InvalidInput(f"cannot do that in the workspace: {exc.strerror or exc}") from None


async def _root(request: Request, user: str, run_id: str) -> Path:
    service = yard(request).service
    run = await service.get_run(user, run_id)
    chat = await service.chat_of(run)
    if not chat.workspace_path or not await _fs(Path(chat.workspace_path).is_dir):
        raise NotFound("this task has no workspace yet")
    return Path(chat.workspace_path)


@router.get("")
async def list_files(
    run_id: str,
    request: Request,
    path: str = "",
    recursive: bool = False,
    user: str = Depends(current_user),
) -> dict[str, Any]:
    root = await _root(request, user, run_id)
    listing = await _fs(files.list_files, root, path, recursive)
    return {"files": listing, "path": path, "recursive": recursive}


@router.get("/download")
async def download(
    run_id: str,
    request: Request,
    path: str = "",
    format: str = "zip",
    user: str = Depends(current_user),
) -> Response:
    root = await _root(request, user, run_id)
    data = await _fs(files.archive, root, path, format)
    ext, mime = ("zip", "application/zip") if format == "zip" else ("tar.gz", "application/gzip")
    return Response(
        data,
        media_type=mime,
        headers={"Content-Disposition": f'attachment; filename="workspace-{run_id[:8]}.{ext}"'},
    )


@router.post("/upload")
@upload_body
async def upload(run_id: str, request: Request, user: str = Depends(current_user)) -> Any:
    root = await _root(request, user, run_id)
    form = await request.form()
    target = form.get("path") or ""
    if not isinstance(target, str):
        raise InvalidInput("'path' must be a directory path")
    uploads = [item for item in form.getlist("file") if not isinstance(item, str)]
    if not uploads:
        raise InvalidInput("no files: send one or more 'file' fields (multipart/form-data)")
    done = []
    for item in uploads:
        name = Path(item.filename or "upload").name
        content = await item.read()
        written = await _fs(
            files.write_file, root, f"{target.strip('/')}/{name}".lstrip("/"), content
        )
        done.append({"name": name, "path": written["path"], "size": written["size"]})
    return JSONResponse({"uploaded": done}, status_code=201)


@router.get("/{path:path}")
async def read_file(
    run_id: str, path: str, request: Request, user: str = Depends(current_user)
) -> dict[str, Any]:
    return await _fs(files.read_file, await _root(request, user, run_id), path)


@router.put("/{path:path}")
async def write_file(
    run_id: str, path: str, request: Request, user: str = Depends(current_user)
) -> dict[str, Any]:
    root = await _root(request, user, run_id)
    data = await json_object(request)
    content = optional_str(data, "content")
    if content is None:
        raise InvalidInput("'content' is required")
    encoding = optional_str(data, "encoding") or "text"
    if encoding == "text":
        raw = content.encode()
    elif encoding == "base64":
        if not content.isascii():
            raise InvalidInput("'content' is not valid base64 (it has non-ASCII characters)")
        try:
            raw = base64.b64decode(content, validate=True)
        except binascii.Error:
            raise InvalidInput("'content' is not valid base64") from None
    else:
        raise InvalidInput("'encoding' must be text or base64")
    return await _fs(files.write_file, root, path, raw)


@router.delete("/{path:path}")
async def delete_file(
    run_id: str, path: str, request: Request, user: str = Depends(current_user)
) -> dict[str, Any]:
    return await _fs(files.delete_path, await _root(request, user, run_id), path)
