"""Per-chat workspaces: the directory an agent works in, kept for the chat's follow-ups.

Every workspace is a git repository. Before a run the head is noted; after it, everything
the agent changed is committed, so each run's diff is ``base..head``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentyard.core.models import Chat, Run

_GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_AUTHOR_NAME": "Agentyard",
    "GIT_AUTHOR_EMAIL": "agent@agentyard.local",
    "GIT_COMMITTER_NAME": "Agentyard",
    "GIT_COMMITTER_EMAIL": "agent@agentyard.local",
}


class WorkspaceError(Exception):
    """The workspace could not be prepared or finalised."""


@dataclass(frozen=True)
class Prepared:
    path: Path
    base_sha: str


class Workspaces:
    def __init__(self, root: Path, author_name: str = "Agentyard", author_email: str = "") -> None:
        self.root = root
        self.env = dict(_GIT_ENV)
        self.env["GIT_AUTHOR_NAME"] = self.env["GIT_COMMITTER_NAME"] = author_name
        if author_email:
            self.env["GIT_AUTHOR_EMAIL"] = self.env["GIT_COMMITTER_EMAIL"] = author_email

    def path_for(self, chat_id: str) -> Path:
        return self.root / chat_id

    async def prepare(self, run: Run, chat: Chat) -> Prepared:
        """The chat's workspace (created on its first run) and its head before the run."""
        path = Path(chat.workspace_path) if chat.workspace_path else self.path_for(chat.chat_id)
        if not path.exists():
            await self._create(path)
        return Prepared(path, (await self.git(path, "rev-parse", "HEAD")).strip())

    async def _create(self, path: Path) -> None:
        """Build the new workspace aside and rename it into place: a run cancelled half-way
        never leaves a broken workspace behind."""
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
        try:
            staging.mkdir()
            await self.git(staging, "init", "-q", "-b", "main")
            await self.git(staging, "commit", "-q", "--allow-empty", "-m", "Workspace created")
            staging.rename(path)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    async def commit(self, path: Path, message: str) -> str | None:
        """Commit everything the agent changed; the new head, or None if nothing changed."""
        await self.git(path, "add", "-A")
        if not (await self.git(path, "status", "--porcelain")).strip():
            return None
        await self.git(path, "commit", "-q", "--no-verify", "-m", message)
        return (await self.git(path, "rev-parse", "HEAD")).strip()

    async def stats(self, path: Path, base: str, head: str = "HEAD") -> dict[str, Any]:
        """Files changed with lines added/removed, and the commits, of ``base..head``."""
        numstat = await self.git(path, "diff", "--numstat", "--no-renames", base, head)
        files = []
        for line in numstat.splitlines():
            added, removed, name = line.split("\t", 2)
            files.append(
                {
                    "path": name,
                    "added": int(added) if added.isdigit() else 0,
                    "removed": int(removed) if removed.isdigit() else 0,
                    "binary": not added.isdigit(),
                }
            )
        commits = (await self.git(path, "rev-list", "--reverse", f"{base}..{head}")).split()
        return {
            "baseSha": base,
            "headSha": (await self.git(path, "rev-parse", head)).strip(),
            "commits": commits,
            "filesChanged": len(files),
            "linesAdded": sum(f["added"] for f in files),
            "linesRemoved": sum(f["removed"] for f in files),
            "files": files,
        }

    async def diff(self, path: Path, base: str, head: str) -> str:
        return await self.git(path, "diff", "--no-color", "--no-renames", base, head)

    async def git(self, cwd: Path, *args: str, timeout: float = 120.0) -> str:
        """Run git in ``cwd``; killed (with its children) on timeout or cancellation."""
        proc = await asyncio.create_subprocess_exec(
            "git",
            "-c",
            "core.hooksPath=/dev/null",
            *args,
            cwd=cwd,
            env={**os.environ, **self.env},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            raise
        if proc.returncode != 0:
            detail = err.decode(errors="replace").strip()[-500:]
            raise WorkspaceError(f"git {args[0]} failed: {detail}")
        return out.decode(errors="replace")
