"""Per-chat workspaces: the directory an agent works in, kept for the chat's follow-ups.

Every workspace is a git repository. Before a run its head is noted; after it, everything the
agent changed is committed (and, for a repository, pushed on the chat's branch), so each run's
diff is ``base..head``.

A task without a repository starts from the server's template workspace. One copy of it is
kept ready (a *spare*, ``.spare-<pid>-<hex>.<host>`` in the workspaces directory, which may
be shared by several machines): a new workspace is that spare renamed into place, and the
next spare is made in the background, off the run's path. A spare left by a process of this
machine that is gone is removed when the next one is made.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import structlog

from agentyard.core.models import Chat
from agentyard.core.repo_rules import parse_repo_url
from agentyard.core.spawning import process_alive
from agentyard.workspace.git import DiffStats, Git, GitError, Saved

T = TypeVar("T")

log = structlog.get_logger(__name__)

SPARE_PREFIX = ".spare-"
_SPARE_DELAY_SECONDS = 0.05


class WorkspaceError(Exception):
    """The workspace could not be prepared or finalised."""


@dataclass(frozen=True)
class Prepared:
    path: Path
    base_sha: str
    base_branch: str | None = None


@dataclass(frozen=True)
class _Spare:
    path: Path
    head: str


class Workspaces:
    def __init__(
        self,
        root: Path,
        git: Git,
        mirrors: Path,
        repo_hosts: list[str],
        *,
        keep_spare: bool = True,
    ) -> None:
        self.root = root
        self.git = git
        self.mirrors = mirrors
        self.repo_hosts = repo_hosts
        self.keep_spare = keep_spare
        self._spare: _Spare | None = None
        self._refill: asyncio.Task[None] | None = None
        self._swept = False

    def path_for(self, chat_id: str) -> Path:
        return self.root / chat_id

    async def prepare(self, chat: Chat, token: str | None) -> Prepared:
        """The chat's workspace (created on its first run) and its head before the run.

        For a repository: a checkout of the base branch from the cached mirror, on the chat's
        created branch, fast-forwarded to what an earlier run pushed.
        """
        path = Path(chat.workspace_path) if chat.workspace_path else self.path_for(chat.chat_id)
        base_branch = chat.base_branch
        try:
            if chat.repo_url:
                url = parse_repo_url(chat.repo_url, self.repo_hosts).url
                if not base_branch:
                    base_branch = await self.git.remote_default_branch(url, token)
                await self._prepare_repo(chat, url, base_branch, path, token)
            elif not path.exists():
                # Just made by the server, untouched by any agent: its head is the one commit.
                return Prepared(path, await self._new_workspace(path), base_branch)
            head = await self.git.head(path)
        except GitError as exc:
            raise WorkspaceError(str(exc)) from None
        return Prepared(path, head, base_branch)

    async def _prepare_repo(
        self, chat: Chat, url: str, base_branch: str, path: Path, token: str | None
    ) -> None:
        assert chat.created_branch
        branch = chat.created_branch
        pushed = await self.git.remote_branch_exists(url, token, branch)
        if path.exists():
            if pushed:
                await self.git.fetch_branch(url, token, path, branch)
            return
        # The mirror fetch runs with this user's token every time: it is the access check.
        mirror = await self.git.ensure_mirror(url, token, self.mirrors)

        async def checkout(staging: Path) -> None:
            await self.git.checkout_workspace(url, mirror, staging, base_branch)
            if pushed:
                await self.git.fetch_branch(url, token, staging, branch)
            else:
                await self.git.create_branch(staging, branch)

        await self._create(path, checkout)

    async def _create(self, path: Path, build: Callable[[Path], Awaitable[T]]) -> T:
        """Build the new workspace aside and rename it into place: a run cancelled half-way
        never leaves a broken workspace behind. What ``build`` returned."""
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
        try:
            built = await build(staging)
            staging.rename(path)
            return built
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    async def _new_workspace(self, path: Path) -> str:
        """A new template workspace at ``path``: the spare renamed into place if there is
        one (a rename, where making one writes a dozen files), else made here; either way
        the next spare is then made in the background. Its head."""
        spare, self._spare = self._spare, None
        head: str | None = None
        if spare is not None:
            try:
                os.rename(spare.path, path)
                head = spare.head
            except OSError:  # e.g. removed by another process: make one
                await asyncio.to_thread(shutil.rmtree, spare.path, True)
        if head is None:
            head = await self._create(path, self.git.init_workspace)
        self._make_spare()
        return head

    def _make_spare(self) -> None:
        if self.keep_spare and (self._refill is None or self._refill.done()):
            self._refill = asyncio.get_running_loop().create_task(
                self._refill_spare(), name="workspace-spare"
            )

    async def _refill_spare(self) -> None:
        # A moment later: not while the run that took the last one starts its agent (the
        # dozen files' writes, in a thread, delayed that start by 2 ms).
        await asyncio.sleep(_SPARE_DELAY_SECONDS)
        if self._spare is not None:
            return
        try:
            if not self._swept:
                await asyncio.to_thread(self._remove_stale_spares)
                self._swept = True
            name = f"{SPARE_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}.{_host()}"
            path = self.root / name
            head = await self.git.init_workspace(path)  # removes what it made if it fails
        except (GitError, OSError) as exc:
            log.warning("could not make a spare workspace", error=str(exc))
            return
        self._spare = _Spare(path, head)

    def _remove_stale_spares(self) -> None:
        """Spares of this machine's processes that are gone (and of this one's pid before
        this process made any: a container's server often gets the same pid each start)."""
        host = f".{_host()}"
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.root):
                if not entry.name.startswith(SPARE_PREFIX) or not entry.name.endswith(host):
                    continue
                pid = entry.name[len(SPARE_PREFIX) :].partition("-")[0]
                if pid.isdigit() and (int(pid) == os.getpid() or not process_alive(int(pid))):
                    shutil.rmtree(entry.path, ignore_errors=True)

    async def close(self) -> None:
        """Stop making spares and remove the one kept."""
        refill, self._refill = self._refill, None
        if refill is not None:
            refill.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refill
        spare, self._spare = self._spare, None
        if spare is not None:
            await asyncio.to_thread(shutil.rmtree, spare.path, True)

    async def commit(
        self, path: Path, message: str, *, changed: bool = False, base: str | None = None
    ) -> Saved:
        """Commit everything the agent changed: the head afterwards (a full commit id), and
        whether the commit is this one's (``changed`` and ``base``: as :meth:`Git.save`)."""
        return await self._local(self.git.save(path, message, changed=changed, base=base))

    async def stats(self, path: Path, base: str, saved: Saved) -> dict[str, Any]:
        """Files changed with lines added/removed, and the commits, of ``base..head`` (two
        commit ids the server resolved itself)."""
        head = saved.head
        if head == base:
            # Two ids the server resolved to commits itself: nothing between them to diff.
            return DiffStats(base_sha=base, head_sha=head, commits=[]).to_dict()
        # The save's own commit on base is all there is to list; else git lists them.
        commits = [head] if saved.only_commit_on(base) else None
        if commits is not None and saved.files is not None:
            return DiffStats(base, head, commits, saved.files).to_dict()  # listed by the save
        return (await self._local(self.git.diff_stats(path, base, head, commits))).to_dict()

    async def diff(self, path: Path, base: str, head: str) -> str:
        return await self._local(self.git.unified_diff(path, base, head))

    async def publish(self, chat: Chat, path: Path, token: str | None) -> None:
        """Push the chat's created branch (the run's commits) to the repository."""
        assert chat.repo_url and chat.created_branch
        url = parse_repo_url(chat.repo_url, self.repo_hosts).url
        try:
            await self.git.push(url, token, path, chat.created_branch)
        except GitError as exc:
            raise WorkspaceError(
                f"push of branch {chat.created_branch} failed; the work is kept in the "
                f"workspace: {exc}"
            ) from None

    @staticmethod
    async def _local(call: Awaitable[T]) -> T:
        try:
            return await call
        except GitError as exc:
            raise WorkspaceError(str(exc)) from None


def _host() -> str:
    """This machine, as a spare's name carries it (a hash: any host name fits)."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
