"""Unified diffs split per file, so a client can line up several runs' changes."""

from __future__ import annotations

import re

_HEADER = re.compile(r"^diff --git a/(.+?) b/(.+)$")


def split_by_file(diff: str) -> dict[str, str]:
    """``{path: that file's part of the diff}``, in the diff's order."""
    files: dict[str, str] = {}
    current: str | None = None
    lines: list[str] = []
    for line in diff.splitlines(keepends=True):
        match = _HEADER.match(line.rstrip("\n"))
        if match:
            if current is not None:
                files[current] = "".join(lines)
            current, lines = match.group(2), []
        lines.append(line)
    if current is not None:
        files[current] = "".join(lines)
    return files
