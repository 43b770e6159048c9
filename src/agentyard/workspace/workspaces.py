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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from agentyard.core.models import Chat
from agentyard.core.repo_rules import parse_repo_url
from agentyard.workspace.remote import GitError, Remotes

T = TypeVar("T")

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
    base_branch: str | None = None


class Workspaces:
    def __init__(
        self,
        root: Path,
        remotes: Remotes,
        repo_hosts: list[str],
        author_name: str = "Agentyard",
        author_email: str = "",
    ) -> None:
        self.root = root
        self.remotes = remotes
        self.repo_hosts = repo_hosts
        self.env = dict(_GIT_ENV)
        self.env["GIT_AUTHOR_NAME"] = self.env["GIT_COMMITTER_NAME"] = author_name
        if author_email:
            self.env["GIT_AUTHOR_EMAIL"] = self.env["GIT_COMMITTER_EMAIL"] = author_email

    def path_for(self, chat_id: str) -> Path:
        return self.root / chat_id

    async def prepare(self, chat: Chat, token: str | None) -> Prepared:
        """The chat's workspace (created on its first run) and its head before the run.

        For a repository: a checkout of the base branch from the cached mirror, on the chat's
        created branch, fast-forwarded to what an earlier run pushed.
        """
        path = Path(chat.workspace_path) if chat.workspace_path else self.path_for(chat.chat_id)
        base_branch = chat.base_branch
        if chat.repo_url:
            if not base_branch:
                repo = parse_repo_url(chat.repo_url, self.repo_hosts)
                base_branch = await self._remote_call(self.remotes.default_branch(repo, token))
            await self._prepare_repo(chat, base_branch, path, token)
        elif not path.exists():
            await self._create(path, None)
        head = (await self.git(path, "rev-parse", "HEAD")).strip()
        return Prepared(path, head, base_branch)

    async def _prepare_repo(
        self, chat: Chat, base_branch: str, path: Path, token: str | None
    ) -> None:
        assert chat.repo_url and chat.created_branch
        repo = parse_repo_url(chat.repo_url, self.repo_hosts)
        branch = chat.created_branch
        pushed = await self._remote_call(self.remotes.remote_has_branch(repo, token, branch))
        if not path.exists():
            mirror = await self._remote_call(self.remotes.mirror(repo, token))

            async def checkout(staging: Path) -> None:
                await self._remote_call(self.remotes.clone(repo, mirror, staging, base_branch))
                if pushed:
                    await self.git(staging, "checkout", "-q", "-B", branch, f"origin/{branch}")
                else:
                    await self.git(staging, "checkout", "-q", "-b", branch)

            await self._create(path, checkout)
        elif pushed:
            await self._remote_call(self.remotes.fetch(path, repo, token, branch))
            await self.git(path, "checkout", "-q", branch)
            await self.git(path, "merge", "-q", "--ff-only", f"origin/{branch}")

    async def publish(self, chat: Chat, path: Path, token: str | None) -> None:
        """Push the chat's created branch (the run's commits) to the repository."""
        assert chat.repo_url and chat.created_branch
        repo = parse_repo_url(chat.repo_url, self.repo_hosts)
        try:
            await self.remotes.push(path, repo, token, chat.created_branch)
        except GitError as exc:
            raise WorkspaceError(
                f"push of branch {chat.created_branch} failed; the work is kept in the "
                f"workspace: {exc}"
            ) from None

    async def _remote_call(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except GitError as exc:
            raise WorkspaceError(str(exc)) from None

    async def _create(self, path: Path, checkout: Callable[[Path], Awaitable[None]] | None) -> None:
        """Build the new workspace aside and rename it into place: a run cancelled half-way
        never leaves a broken workspace behind."""
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
        try:
            if checkout is None:
                staging.mkdir()
                await self.git(staging, "init", "-q", "-b", "main")
                await self.git(staging, "commit", "-q", "--allow-empty", "-m", "Workspace created")
            else:
                await checkout(staging)
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
