"""Safe access to a workspace's files for the API's files endpoints.

A user-given path is relative to the workspace root and must stay inside it: ``..``
segments, absolute paths and NUL bytes are refused, and so is a path that a symlink leads
out of the root (a repository may contain ``link -> /etc``). A hard link is refused too:
a regular file with more than one link may be the same file as one outside the workspace
(``ln /some/secret file``), so it is never read, archived or written through. ``.git`` is
never listed, read, written or deleted. Malformed or escaping paths raise InvalidInput,
missing ones NotFound.

Everything here is blocking filesystem work: call it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import base64
import io
import mimetypes
import os
import shutil
import stat
import tarfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from agentyard.core.errors import InvalidInput, NotFound, PayloadTooLarge

DEFAULT_MAX_READ_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_ENTRIES = 10_000
_GIT = ".git"

# O_NONBLOCK: opening a FIFO (an agent may leave one) must not block the thread that opens
# it; O_NOCTTY: opening a terminal must not make it the server's. What is opened is then
# refused unless it is a regular file (:func:`_check_regular`).
_OPEN_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC

_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def resolve(root: Path, path: str) -> Path:
    """The real location of ``path`` inside ``root`` (symlinks followed, and checked to stay
    inside). InvalidInput if it is malformed or escapes the root."""
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(real_root.joinpath(*_parts(path))))
    if not _inside(real, real_root):
        raise InvalidInput(f"path {path!r} is outside the workspace")
    if _GIT in real.relative_to(real_root).parts:
        raise InvalidInput(f"path {path!r} is inside .git")
    return real


def list_files(root: Path, path: str = "", recursive: bool = False) -> list[dict[str, Any]]:
    """The entries of directory ``path``: ``name``, ``path`` (relative to the root),
    ``type`` ('file' | 'directory') and ``size`` (bytes; None for directories), sorted by path.

    ``.git`` and symlinks leading out of the root are left out; symlinked directories are
    listed but not descended into.
    """
    real_root = Path(os.path.realpath(root))
    directory = resolve(root, path)
    if not directory.exists():
        raise NotFound(f"path {path!r} not found")
    if not directory.is_dir():
        raise InvalidInput(f"path {path!r} is not a directory")
    entries: list[dict[str, Any]] = []
    for entry, relative in _walk(directory, real_root, recursive):
        info = _entry_info(entry, real_root)
        if info is None:
            continue
        entries.append({"name": entry.name, "path": relative, **info})
        if len(entries) > DEFAULT_MAX_ENTRIES:
            raise PayloadTooLarge(
                f"more than {DEFAULT_MAX_ENTRIES} entries: list a subdirectory, or not recursively"
            )
    entries.sort(key=lambda e: str(e["path"]))
    return entries


def read_file(root: Path, path: str, max_bytes: int = DEFAULT_MAX_READ_BYTES) -> dict[str, Any]:
    """The file's ``content``: UTF-8 text as is (``encoding`` 'text'), anything else in
    base64 (``encoding`` 'base64'); with ``path``, ``mimeType`` and ``size``."""
    real = resolve(root, path)
    data = _read_regular(real, path, max_bytes)
    relative = "/".join(_parts(path))
    text = _as_text(data)
    guessed = mimetypes.guess_type(real.name)[0]
    if text is not None:
        return {
            "path": relative,
            "content": text,
            "encoding": "text",
            "mimeType": guessed or "text/plain",
            "size": len(data),
        }
    return {
        "path": relative,
        "content": base64.b64encode(data).decode("ascii"),
        "encoding": "base64",
        "mimeType": guessed or "application/octet-stream",
        "size": len(data),
    }


def write_file(root: Path, path: str, content: bytes) -> dict[str, Any]:
    """Write ``content`` to ``path`` (parents created, an existing file replaced):
    ``{"success": True, "path": <relative path>, "size": <bytes written>}``."""
    real = resolve(root, path)
    if real == Path(os.path.realpath(root)):
        raise InvalidInput("cannot write to the workspace root")
    if real.is_dir():
        raise InvalidInput(f"path {path!r} is a directory")
    # No O_TRUNC: what is opened is checked to be a regular file before anything changes.
    flags = os.O_WRONLY | os.O_CREAT | _OPEN_FLAGS
    try:
        # ``real`` has no symlinks left, and its missing parents are created below the root.
        real.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(real, flags, 0o644)
    except OSError as exc:
        # A FIFO without a reader, or a socket, cannot even be opened: say what it is.
        raise InvalidInput(
            _special(real, path) or f"cannot write {path!r}: {exc.strerror}"
        ) from None
    with os.fdopen(fd, "wb") as fh:
        _check_regular(os.fstat(fd), path)
        os.ftruncate(fd, 0)
        fh.write(content)
    return {"success": True, "path": "/".join(_parts(path)), "size": len(content)}


def delete_path(root: Path, path: str) -> dict[str, Any]:
    """Delete a file, a symlink (itself, never its target) or a directory with everything
    in it: ``{"success": True, "path": <relative path>}``. Never the root, never ``.git``."""
    parts = _parts(path)
    if not parts:
        raise InvalidInput("cannot delete the workspace root")
    real_root = Path(os.path.realpath(root))
    # The parent is resolved (and so checked); the last component itself is not followed.
    parent = resolve(root, "/".join(parts[:-1]))
    target = parent / parts[-1]
    try:
        mode = target.lstat().st_mode
    except FileNotFoundError:
        raise NotFound(f"path {path!r} not found") from None
    if target == real_root:
        raise InvalidInput("cannot delete the workspace root")
    if stat.S_ISDIR(mode):
        # rmtree never follows symlinks inside the tree it removes.
        shutil.rmtree(target)
    else:
        target.unlink()
    return {"success": True, "path": target.relative_to(real_root).as_posix()}


def archive(root: Path, path: str = "", fmt: str = "zip") -> bytes:
    """Directory ``path`` of the workspace (default: all of it), without ``.git``, as a zip
    or a gzipped tar; names are relative to that directory.

    Nothing outside the root is read: a tar keeps symlinks as links (their target is just
    text); a zip, which has no portable links, holds the content of those leading to a
    regular file inside the root and skips the others. Special files, and hard links
    (regular files with more than one link, which may be files outside the root), are
    skipped.
    """
    if fmt not in ("zip", "tar"):
        raise InvalidInput("archive format must be 'zip' or 'tar'")
    real_root = Path(os.path.realpath(root))
    directory = resolve(root, path)
    if not directory.is_dir():
        raise NotFound(f"directory {path!r} not found")
    buffer = io.BytesIO()
    if fmt == "zip":
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for entry, name in _walk(directory, directory, recursive=True):
                _add_to_zip(zf, entry, name, real_root)
    else:
        with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
            for entry, name in _walk(directory, directory, recursive=True):
                _add_to_tar(tf, entry, name)
    return buffer.getvalue()


# -- internals -------------------------------------------------------------------------


def _parts(path: str) -> tuple[str, ...]:
    """The segments of a relative path; InvalidInput for anything that is not one."""
    if not isinstance(path, str):
        raise InvalidInput("path must be a string")
    if "\0" in path:
        raise InvalidInput("path must not contain NUL bytes")
    if path.startswith(("/", "\\")) or (len(path) > 1 and path[1] == ":"):
        raise InvalidInput(f"path {path!r} must be relative to the workspace")
    parts = tuple(p for p in PurePosixPath(path).parts if p not in ("", "."))
    if ".." in parts:
        raise InvalidInput(f"path {path!r} must not contain '..'")
    if _GIT in parts:
        raise InvalidInput(f"path {path!r} is inside .git")
    return parts


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _walk(directory: Path, base: Path, recursive: bool) -> Iterator[tuple[Path, str]]:
    """(entry, path relative to ``base``) under ``directory``, never into ``.git`` or
    through a symlinked directory."""
    pending = [directory]
    while pending:
        current = pending.pop()
        try:
            children = list(os.scandir(current))
        except OSError:
            continue
        for child in children:
            if child.name == _GIT:
                continue
            entry = Path(child.path)
            yield entry, entry.relative_to(base).as_posix()
            if recursive and child.is_dir(follow_symlinks=False):
                pending.append(entry)


def _entry_info(entry: Path, real_root: Path) -> dict[str, Any] | None:
    """``type`` and ``size`` of an entry; None for what is not shown (links leading out of
    the root or nowhere, sockets, devices)."""
    real = Path(os.path.realpath(entry))
    if not _inside(real, real_root) or _GIT in real.relative_to(real_root).parts:
        return None
    try:
        st = real.stat()
    except OSError:
        return None
    if stat.S_ISDIR(st.st_mode):
        return {"type": "directory", "size": None}
    if stat.S_ISREG(st.st_mode):
        return {"type": "file", "size": st.st_size}
    return None


def _read_regular(real: Path, path: str, max_bytes: int) -> bytes:
    try:
        fd = os.open(real, os.O_RDONLY | _OPEN_FLAGS)
    except FileNotFoundError:
        raise NotFound(f"path {path!r} not found") from None
    except OSError as exc:
        raise InvalidInput(
            _special(real, path) or f"cannot read {path!r}: {exc.strerror}"
        ) from None
    try:
        st = os.fstat(fd)
        _check_regular(st, path)
        if st.st_size > max_bytes:
            raise PayloadTooLarge(f"file {path!r} is larger than {max_bytes} bytes")
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as fh:
        return fh.read(max_bytes + 1)[:max_bytes]


def _check_regular(st: os.stat_result, path: str) -> None:
    """InvalidInput unless the opened file is a regular file with a single link."""
    if stat.S_ISDIR(st.st_mode):
        raise InvalidInput(f"path {path!r} is a directory")
    if not stat.S_ISREG(st.st_mode):
        kind = _KINDS.get(stat.S_IFMT(st.st_mode))
        raise InvalidInput(f"path {path!r} is {kind + ', ' if kind else ''}not a regular file")
    if st.st_nlink > 1:
        raise InvalidInput(f"path {path!r} is a hard link: it may be a file outside the workspace")


def _special(real: Path, path: str) -> str | None:
    """Why ``path`` cannot be opened, if it is a special file (None otherwise)."""
    try:
        kind = _KINDS.get(stat.S_IFMT(real.lstat().st_mode))
    except OSError:
        return None
    return f"path {path!r} is {kind}, not a regular file" if kind else None


def _as_text(data: bytes) -> str | None:
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _open_unlinked_regular(path: Path) -> tuple[int, os.stat_result] | None:
    """An open descriptor on ``path`` and its status, if it is a regular file (not a symlink,
    not special) with a single link; None otherwise. Checked on the descriptor, so what is
    checked is what is read."""
    try:
        fd = os.open(path, os.O_RDONLY | _OPEN_FLAGS)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
    except OSError:
        os.close(fd)
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
        os.close(fd)
        return None
    return fd, st


def _add_to_zip(zf: zipfile.ZipFile, entry: Path, name: str, real_root: Path) -> None:
    """The regular file ``entry`` is or leads to, if inside the root (and not in .git), and
    not a hard link, into the zip."""
    real = Path(os.path.realpath(entry))
    if not _inside(real, real_root) or _GIT in real.relative_to(real_root).parts:
        return
    opened = _open_unlinked_regular(real)
    if opened is None:
        return
    fd, st = opened
    # As ZipFile.write would (from the descriptor's status, not the path's again).
    date_time = max(time.localtime(st.st_mtime)[:6], (1980, 1, 1, 0, 0, 0))
    info = zipfile.ZipInfo(name, date_time)
    info.external_attr = (st.st_mode & 0xFFFF) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    info.file_size = st.st_size
    with os.fdopen(fd, "rb") as src, zf.open(info, "w") as dst:
        shutil.copyfileobj(src, dst)


def _add_to_tar(tf: tarfile.TarFile, entry: Path, relative: str) -> None:
    """A file, directory or symlink (as a link, never followed) into the tar; a regular
    file only if it is not a hard link."""
    try:
        mode = entry.lstat().st_mode
    except OSError:
        return
    if stat.S_ISREG(mode):
        opened = _open_unlinked_regular(entry)
        if opened is None:
            return
        with os.fdopen(opened[0], "rb") as data:
            info = tf.gettarinfo(str(entry), arcname=relative, fileobj=data)  # fstat
            _anonymise(info)
            tf.addfile(info, data)
        return
    if not (stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
        return
    try:
        info = tf.gettarinfo(str(entry), arcname=relative)  # lstat: links stay links
    except OSError:
        return
    if info is None or not (info.isdir() or info.issym()):
        return
    _anonymise(info)
    tf.addfile(info)


def _anonymise(info: tarfile.TarInfo) -> None:
    # Ownership of the server's files is nobody's business.
    info.uid = info.gid = 0
    info.uname = info.gname = ""


__all__ = [
    "archive",
    "delete_path",
    "list_files",
    "read_file",
    "resolve",
    "write_file",
]
