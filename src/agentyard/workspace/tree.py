"""A small directory tree held in memory, written out again as it was (the workspace
template: a new workspace is its few directories and files, written straight from memory,
with no copy of each file's metadata and no git process)."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Entry:
    """A directory (``content`` None) or regular file, by its path below the tree's root."""

    path: str
    mode: int
    content: bytes | None

    def write(self, root: Path) -> None:
        target = root / self.path
        if self.content is None:
            target.mkdir(mode=self.mode)
            return
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.mode)
        try:
            view = memoryview(self.content)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)


def read_tree(root: Path) -> list[Entry]:
    """Every directory and regular file below ``root``, each directory before what it holds
    (anything else, such as a link, is left out)."""
    entries = []
    for directory, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(directory)
        for name in dirnames:
            info = (base / name).lstat()
            if stat.S_ISDIR(info.st_mode):
                relative = str((base / name).relative_to(root))
                entries.append(Entry(relative, stat.S_IMODE(info.st_mode), None))
        for name in sorted(filenames):
            info = (base / name).lstat()
            if stat.S_ISREG(info.st_mode):
                relative = str((base / name).relative_to(root))
                entries.append(
                    Entry(relative, stat.S_IMODE(info.st_mode), (base / name).read_bytes())
                )
    return sorted(entries, key=lambda e: e.path.count("/"))


def write_tree(entries: list[Entry], root: Path) -> None:
    """``entries`` below ``root`` (made if need be; what they name must not exist yet)."""
    root.mkdir(parents=True, exist_ok=True)
    for entry in entries:
        entry.write(root)
