"""The host side's writes into a chat's agent state, which the agent itself can rewrite.

Between runs, anything under the state directory may have been replaced by the agent: a
directory by a symlink to a host path, a file by a link. The server writes there as its own
user, so it never follows what it finds: a planted link is removed, never written through.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path


def own_dir(parent: Path, name: str) -> Path:
    """``parent/name`` as a real directory (a symlink or file planted there is removed)."""
    parent.mkdir(parents=True, exist_ok=True)
    path = parent / name
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    path.mkdir(exist_ok=True)
    if path.is_symlink():  # raced in between: refuse rather than follow
        raise OSError(f"{path} is a symlink")
    return path


def write_file(directory: Path, name: str, content: str) -> None:
    """Write ``directory/name`` without following a link planted at that name: the content
    goes to a new file that then replaces whatever the name was (a rename replaces a symlink
    itself, not its target)."""
    staging = directory / f".{name}.{uuid.uuid4().hex[:8]}"
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(content)
        target = directory / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)
