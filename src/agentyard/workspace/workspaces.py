"""Per-chat workspaces: the directory an agent works in, kept for the chat's follow-ups."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agentyard.core.models import Chat, Run


class WorkspaceError(Exception):
    """The workspace could not be prepared or finalised."""


class Workspaces:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, chat_id: str) -> Path:
        return self.root / chat_id

    async def prepare(self, run: Run, chat: Chat) -> Path:
        """The chat's workspace, created on its first run (a fresh ``git init`` directory)."""
        path = Path(chat.workspace_path) if chat.workspace_path else self.path_for(chat.chat_id)
        if not (path / ".git").exists():
            path.mkdir(parents=True, exist_ok=True)
            await _git(path, "init", "-q", "-b", "main")
        return path


async def _git(cwd: Path, *args: str, timeout: float = 60.0) -> str:
    proc = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    if proc.returncode != 0:
        raise WorkspaceError(f"git {args[0]} failed: {err.decode(errors='replace').strip()[-500:]}")
    return out.decode()
