"""The data directory is the server's alone: it and everything made in it are private.

``agentyard serve``, ``worker`` and ``migrate`` start with umask 0o077, so whatever they
create (the database, keys, workspaces, mirrors, agent state) is readable by their user
only; the data directory and an SQLite database that already exist with wider modes (from
an older version, or made by hand) are narrowed when the server starts.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sqlalchemy.engine import make_url

PRIVATE_UMASK = 0o077


def use_private_umask() -> None:
    """Files and directories this process creates from now on are its user's only."""
    os.umask(PRIVATE_UMASK)


def ensure_private_dir(path: Path) -> Path:
    """``path`` as a directory of mode 0700: created so, or narrowed if group or others
    have any access to it."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    _narrow(path, 0o700)
    return path


def make_database_private(db_url: str) -> None:
    """Mode 0600 for an SQLite database file (and its journal, WAL and shared-memory files,
    if there); nothing for other databases."""
    if not db_url.startswith("sqlite"):
        return
    database = make_url(db_url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    for suffix in ("", "-journal", "-wal", "-shm"):
        path = Path(database + suffix)
        if path.is_file():
            _narrow(path, 0o600)


def _narrow(path: Path, mode: int) -> None:
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        path.chmod(mode)
