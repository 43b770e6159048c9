"""Reading and writing a workspace's files for the API, never outside the workspace.

Paths are relative to the workspace root. ``..``, absolute paths, NUL bytes, ``.git`` and
symlinks that lead out of the workspace are refused.
"""

from __future__ import annotations

import base64
import io
import mimetypes
import os
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from agentyard.core.errors import InvalidInput, NotFound

_TEXT_LIMIT = 10 * 1024 * 1024


def resolve(root: Path, rel: str) -> Path:
    """The real path of ``rel`` inside ``root``; InvalidInput if it would leave it."""
    if "\x00" in rel:
        raise InvalidInput("path contains a NUL character")
    rel = rel.strip()
    if rel.startswith(("/", "\\")) or (len(rel) > 1 and rel[1] == ":"):
        raise InvalidInput("path must be relative to the workspace root")
    parts = PurePosixPath(rel).parts
    if ".." in parts:
        raise InvalidInput("path must not contain '..'")
    if ".git" in parts:
        raise InvalidInput("the workspace's .git directory is not accessible")
    real_root = root.resolve()
    real = (real_root / rel).resolve()
    if real != real_root and real_root not in real.parents:
        raise InvalidInput("path leads outside the workspace")
    return real


def list_files(root: Path, rel: str, recursive: bool) -> list[dict[str, Any]]:
    base = resolve(root, rel)
    if not base.is_dir():
        raise NotFound(f"no directory {rel or '.'!r} in the workspace")
    real_root = root.resolve()
    found: list[dict[str, Any]] = []
    walker = base.rglob("*") if recursive else base.iterdir()
    for entry in sorted(walker):
        relative = entry.relative_to(real_root)
        if ".git" in relative.parts:
            continue
        info = entry.lstat()
        kind = "directory" if stat.S_ISDIR(info.st_mode) else "file"
        found.append(
            {
                "name": entry.name,
                "path": relative.as_posix(),
                "type": kind,
                "size": info.st_size if kind == "file" else None,
            }
        )
    return found


def read_file(root: Path, rel: str) -> dict[str, Any]:
    path = resolve(root, rel)
    if not path.is_file():
        raise NotFound(f"no file {rel!r} in the workspace")
    size = path.stat().st_size
    if size > _TEXT_LIMIT:
        raise InvalidInput(f"{rel!r} is {size} bytes; download it as an archive instead")
    data = path.read_bytes()
    mime = mimetypes.guess_type(path.name)[0]
    try:
        content, encoding = data.decode("utf-8"), "text"
        if "\x00" in content:
            raise UnicodeDecodeError("utf-8", data, 0, 1, "NUL")
        mime = mime or "text/plain"
    except UnicodeDecodeError:
        content, encoding = base64.b64encode(data).decode(), "base64"
        mime = mime or "application/octet-stream"
    return {
        "path": path.relative_to(root.resolve()).as_posix(),
        "content": content,
        "encoding": encoding,
        "mimeType": mime,
        "size": size,
    }


def write_file(root: Path, rel: str, data: bytes) -> dict[str, Any]:
    path = resolve(root, rel)
    if path == root.resolve():
        raise InvalidInput("path must name a file")
    if path.is_dir():
        raise InvalidInput(f"{rel!r} is a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_NOFOLLOW: a symlink swapped in after the check is not followed.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return {"success": True, "path": path.relative_to(root.resolve()).as_posix(), "size": len(data)}


def delete_path(root: Path, rel: str) -> dict[str, Any]:
    path = resolve(root, rel)
    if path == root.resolve():
        raise InvalidInput("the workspace root cannot be deleted")
    if not path.exists() and not path.is_symlink():
        raise NotFound(f"no file or directory {rel!r} in the workspace")
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
    return {"success": True, "path": path.relative_to(root.resolve()).as_posix()}


def archive(root: Path, rel: str, fmt: str) -> bytes:
    """A zip, or a gzipped tar, of a directory of the workspace (no .git, symlinks as links)."""
    base = resolve(root, rel)
    if not base.is_dir():
        raise NotFound(f"no directory {rel or '.'!r} in the workspace")
    buffer = io.BytesIO()
    entries = [p for p in sorted(base.rglob("*")) if ".git" not in p.relative_to(base).parts]
    if fmt == "zip":
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for entry in entries:
                if entry.is_file() and not entry.is_symlink():
                    zf.write(entry, entry.relative_to(base).as_posix())
    elif fmt == "tar":
        with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
            for entry in entries:
                tf.add(entry, entry.relative_to(base).as_posix(), recursive=False)
    else:
        raise InvalidInput("'format' must be zip or tar")
    return buffer.getvalue()
