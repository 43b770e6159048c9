"""Git through the real git CLI: mirrors, workspaces, branches, commits, pushes and diffs.

Every command runs through :class:`~agentyard.workspace.git_process.GitProcess`: a controlled
environment, the host-bound askpass (a token is never in argv, a URL or a file), only the
https (and, when allowed, http) transports, its own process group, a timeout.

A workspace is where an agent works, so its ``.git`` is not trusted. Before every git
command the server runs on a workspace's repository (commit, branch, checkout, fetch, push,
rev-parse), the git directory is made trustworthy: it must be a plain directory holding no
symlinks and no ``commondir`` redirect, its config is reduced to known-harmless keys (so
no filter, fsmonitor, textconv, external diff, include, pager, editor, gpg program, worktree
or url rewrite the agent planted is ever read), ``objects/info/alternates`` and
``info/attributes`` are removed, and hooks are always disabled. So an agent can neither run
code through the server's git nor make it read or write outside the workspace, and cannot
redirect a push or run code with the token.

Tree-to-tree diffs (:meth:`Git.diff_stats`, :meth:`Git.unified_diff`) may be asked for while
an agent is still working in the workspace, so they change nothing there: they run in a
throwaway bare repository of the server's own, with the workspace's object directory as its
object store, so not a line of the workspace's config (nor its attributes, refs or hooks) is
read.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import os
import re
import shutil
import time
import unicodedata
import uuid
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agentyard.workspace import tree
from agentyard.workspace.git_process import (
    HOST_ENV,
    TOKEN_ENV,
    GitError,
    GitProcess,
    _failure,
    _redact_url,
)
from agentyard.workspace.gitdir import (
    ORIGIN_CONFIG,
    SAFE_CONFIG,
    checked_git_dir,
    committed_head,
    config_text,
    drop_git_files,
    object_store,
    shadow_env,
    shadow_repo,
)

__all__ = [
    "HOST_ENV",
    "TOKEN_ENV",
    "DiffStats",
    "FileStat",
    "Git",
    "GitError",
    "Saved",
    "mirror_name",
]

# A full object id (sha1 or sha256): a revision that needs no refs to resolve.
_WORK_TREE_CHANGED = frozenset(f"1 .{y}" for y in "MTDAU")
"""Porcelain v2 records of an entry the work tree changed while its index entry is HEAD's."""
_FULL_OID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_NOTHING_TO_COMMIT = re.compile(
    r"^(nothing to commit|nothing added to commit|no changes added)", re.MULTILINE
)
"""What ``git commit`` says (LC_ALL=C) when the index equals HEAD, with exit code 1."""

_LOCK_POLL_SECONDS = 0.05

# How many config texts written by the server are remembered (the most recent ones).
_TRUSTED_MEMORY = 1024


@dataclass(frozen=True)
class FileStat:
    path: str
    added: int
    removed: int
    binary: bool


@dataclass(frozen=True)
class DiffStats:
    """What ``base..head`` changed."""

    base_sha: str
    head_sha: str
    commits: list[str]
    """Commits in ``base..head``, oldest first."""
    files: list[FileStat] = field(default_factory=list)

    @property
    def files_changed(self) -> int:
        return len(self.files)

    @property
    def lines_added(self) -> int:
        return sum(f.added for f in self.files)

    @property
    def lines_removed(self) -> int:
        return sum(f.removed for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        """The API's camelCase shape."""
        return {
            "baseSha": self.base_sha,
            "headSha": self.head_sha,
            "commits": list(self.commits),
            "filesChanged": self.files_changed,
            "linesAdded": self.lines_added,
            "linesRemoved": self.lines_removed,
            "files": [
                {"path": f.path, "added": f.added, "removed": f.removed, "binary": f.binary}
                for f in self.files
            ],
        }


@dataclass(frozen=True)
class Saved:
    """What :meth:`Git.save` did."""

    head: str
    """The commit checked out afterwards."""
    committed: bool
    """Whether the save made that commit (else the work tree was clean)."""
    before: str | None
    """The commit checked out before (None where git named none: a branch yet unborn)."""
    files: list[FileStat] | None = None
    """What the save's commit changed from the ``base`` it was given, listed beside the
    commit: ``base..head``'s files when :meth:`only_commit_on` ``base``. None when it was
    given no base, made no commit, or git could not list them."""

    def only_commit_on(self, base: str) -> bool:
        """Whether ``base..head`` is exactly the commit the save made: made on ``base``,
        which the agent did not move from."""
        return self.committed and self.before == base


class Git(GitProcess):
    """Git's operations for the server (on top of :class:`GitProcess`, which runs git)."""

    def __init__(
        self,
        state_dir: Path,
        *,
        timeout: float = 600.0,
        author_name: str = "Agentyard",
        author_email: str = "agent@agentyard.local",
        allow_http: bool = False,
        git: str = "git",
    ) -> None:
        super().__init__(
            state_dir,
            timeout=timeout,
            author_name=author_name,
            author_email=author_email,
            allow_http=allow_http,
            git=git,
        )
        # One asyncio lock per mirror, per event loop (a lock is bound to its loop).
        self._locks: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[Path, asyncio.Lock]
        ] = weakref.WeakKeyDictionary()
        self._trusted: dict[bytes, list[tuple[str, str]]] = {}
        """Config texts the server wrote into workspaces, and the entries each holds."""
        self._template: tuple[list[tree.Entry], str] | None = None
        """The template workspace's directories and files (they are few and small) and its
        commit."""

    # -- remote repositories ---------------------------------------------------------

    async def remote_default_branch(self, url: str, token: str | None) -> str:
        """The branch the remote's HEAD points at."""
        self._check_url(url)
        out = await self._run(
            ["ls-remote", "--symref", url, "HEAD"], cwd=self.state_dir, url=url, token=token
        )
        for line in out.splitlines():
            if line.startswith("ref: refs/heads/") and line.endswith("\tHEAD"):
                return line[len("ref: refs/heads/") : -len("\tHEAD")]
        raise GitError("git ls-remote: the remote has no default branch (empty repository?)")

    async def remote_branch_exists(self, url: str, token: str | None, branch: str) -> bool:
        """Whether the remote has ``branch`` (e.g. pushed by an earlier run of the chat)."""
        self._check_url(url)
        _check_branch(branch)
        out = await self._run(
            ["ls-remote", "--heads", url, f"refs/heads/{branch}"],
            cwd=self.state_dir, url=url, token=token,
        )  # fmt: skip
        return bool(out.strip())

    async def ensure_mirror(self, url: str, token: str | None, cache_dir: Path) -> Path:
        """The bare mirror of ``url`` in ``cache_dir``, cloned the first time and brought up to
        date (branches and tags, pruned) every time.

        The fetch is done with the caller's token every time, so it is also the caller's
        access check: call it before :meth:`checkout_workspace`, whoever filled the cache.
        """
        self._check_url(url)
        cache_dir.mkdir(parents=True, exist_ok=True)
        mirror = cache_dir / mirror_name(url)
        async with self._mirror_lock(mirror):
            if mirror.is_dir():
                await self._run(
                    [
                        "fetch", "--quiet", "--prune", "--no-write-fetch-head", url,
                        "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*",
                    ],
                    cwd=mirror, url=url, token=token,
                )  # fmt: skip
                return mirror
            # Cloned aside and renamed: a failed or cancelled clone leaves no mirror behind.
            staging = cache_dir / f".{mirror.name}.tmp-{uuid.uuid4().hex[:8]}"
            try:
                await self._run(
                    ["clone", "--quiet", "--bare", "--", url, str(staging)],
                    cwd=cache_dir, url=url, token=token,
                )  # fmt: skip
                staging.rename(mirror)
            finally:
                if staging.exists():
                    await asyncio.to_thread(shutil.rmtree, staging, True)
        return mirror

    # -- workspaces ------------------------------------------------------------------

    async def checkout_workspace(self, url: str, mirror: Path, dest: Path, branch: str) -> str:
        """Clone ``mirror`` into ``dest`` (hard-linked objects: fast, and independent of the
        mirror afterwards), with ``origin`` set to ``url``, checked out at ``branch``.
        Returns the checked-out commit (the run's base)."""
        self._check_url(url)
        _check_branch(branch)
        if dest.exists() and any(dest.iterdir()):
            raise GitError(f"git clone: {dest} already exists and is not empty")
        created = not dest.exists()
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            async with self._mirror_lock(mirror):
                await self._run(
                    ["clone", "--quiet", "--no-tags", "--branch", branch, "--",
                     str(mirror), str(dest)],
                    cwd=dest.parent, allow_file=True,
                )  # fmt: skip
            await self._run(["remote", "set-url", "origin", url], cwd=dest)
            return await self._rev_parse(dest, "HEAD")
        except BaseException:
            if created and dest.exists():
                await asyncio.to_thread(shutil.rmtree, dest, True)
            raise

    async def init_workspace(self, dest: Path) -> str:
        """A fresh repository on ``main`` with one empty commit (for tasks without a
        repository); that commit's sha.

        A copy of the server's template repository (made once, in its private state
        directory, and read once): no git process per workspace, and its few directories
        and files written straight from memory. Every such workspace starts at the same
        commit, which is all a run's diff (``base..head``) needs."""
        if dest.exists() and any(dest.iterdir()):
            raise GitError(f"git init: {dest} already exists and is not empty")
        created = not dest.exists()
        try:
            entries, sha = await self._workspace_template()
            # In a thread: creating files and directories is slow kernel work on some disks
            # (about 3 ms for this one's dozen on the project's machine).
            await asyncio.to_thread(tree.write_tree, entries, dest)
            return sha
        except BaseException:
            if created and dest.exists():
                await asyncio.to_thread(shutil.rmtree, dest, True)
            raise

    async def _workspace_template(self) -> tuple[list[tree.Entry], str]:
        """The template of new workspaces and its commit: built aside and renamed into place
        the first time (another process sharing the state directory may win the rename)."""
        if self._template is not None:
            return self._template
        template = self.state_dir / "workspace-template"
        if not template.is_dir():
            staging = self.state_dir / f".workspace-template-{uuid.uuid4().hex[:8]}"
            try:
                staging.mkdir()
                # No hook samples, description or exclude file: fewer files to copy a run.
                await self._run(["init", "--quiet", "--template=", "-b", "main"], cwd=staging)
                await self._run(
                    ["-c", "commit.gpgSign=false", "-c", "core.logAllRefUpdates=false",
                     "commit", "--quiet", "--no-verify", "--allow-empty", "-m",
                     "Workspace created"],
                    cwd=staging,
                )  # fmt: skip
                # Only what git needs (it makes the rest when it needs it): every directory
                # and file costs each new workspace a system call (about 0.3 ms here).
                (staging / ".git" / "COMMIT_EDITMSG").unlink(missing_ok=True)
                (staging / ".git" / "index").unlink(missing_ok=True)  # an empty tree's
                for empty in ("objects/info", "objects/pack", "refs/tags"):
                    with contextlib.suppress(OSError):
                        (staging / ".git" / empty).rmdir()
                # Its config as the server writes it, so a copy's is known without a process.
                await self._trust_workspace(staging)
                with contextlib.suppress(OSError):  # lost the race: the winner's is as good
                    staging.rename(template)
            finally:
                if staging.exists():
                    await asyncio.to_thread(shutil.rmtree, staging, True)
        await self._trust_workspace(template)
        sha = await self._rev_parse(template, "HEAD")
        self._template = (await asyncio.to_thread(tree.read_tree, template), sha)
        return self._template

    async def create_branch(self, dest: Path, name: str) -> None:
        """Create branch ``name`` at HEAD and check it out."""
        _check_branch(name)
        await self._trust_workspace(dest)
        await self._run(["checkout", "--quiet", "-b", name], cwd=dest)

    async def fetch_branch(self, url: str, token: str | None, dest: Path, branch: str) -> str:
        """Fetch ``branch`` from ``url`` and check it out in ``dest``, fast-forwarded to the
        remote's tip (a follow-up run continuing on a pushed branch). Returns HEAD."""
        self._check_url(url)
        _check_branch(branch)
        await self._trust_workspace(dest, url)
        tracking = f"refs/remotes/origin/{branch}"
        await self._run(
            ["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", url,
             f"+refs/heads/{branch}:{tracking}"],
            cwd=dest, url=url, token=token,
        )  # fmt: skip
        if await self._probe(["rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"], dest):
            await self._run(["checkout", "--quiet", branch], cwd=dest)
            await self._run(["merge", "--quiet", "--ff-only", tracking], cwd=dest)
        else:
            await self._run(["checkout", "--quiet", "-b", branch, "--track", tracking], cwd=dest)
        return await self._rev_parse(dest, "HEAD")

    async def commit_all(self, dest: Path, message: str) -> str | None:
        """Stage everything (additions, changes, deletions) and commit it as the configured
        author; the new commit's sha, or None when there was nothing to commit."""
        saved = await self.save(dest, message)
        return saved.head if saved.committed else None

    async def save(
        self, dest: Path, message: str, *, changed: bool = False, base: str | None = None
    ) -> Saved:
        """Commit everything in the work tree (as :meth:`commit_all`): the commit checked out
        afterwards, whether a commit was made, and the one checked out before. A clean tree
        costs one git process, whose status also names the head (the agent may have
        committed itself); a changed one three (status, add, commit). ``changed`` says
        the tree was probably changed (the agent reported writing a file): no status then,
        two processes (add, commit), or a third to name the head should nothing be left.

        With ``base`` (a full commit id) the files the commit changes from it are listed
        while git commits (:attr:`Saved.files`): one more process, beside the commit
        rather than after it."""
        gitdir = await self._trust_workspace(dest)
        if base is not None and not _FULL_OID.fullmatch(base):
            base = None
        if changed:
            return await self._add_and_commit(dest, gitdir, message, base)
        status = await self._run(
            ["status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all"], cwd=dest
        )
        head: str | None = None
        changed = False
        staged_only = True
        records = iter(status.split("\0"))
        for record in records:
            if record.startswith("# branch.oid "):
                head = record.removeprefix("# branch.oid ")
            elif record and not record.startswith("#"):
                changed = True
                if record.startswith("2 "):
                    next(records, None)  # a rename's original path: not a record
                # Untracked, or changed in the work tree against an index that is HEAD's:
                # the work tree is surely not HEAD's.
                elif record.startswith("? ") or record[:4] in _WORK_TREE_CHANGED:
                    staged_only = False
                    break
        before = head if head is not None and _FULL_OID.fullmatch(head) else None
        if not changed and before is not None:
            return Saved(before, False, before)
        await self._run(["add", "--all"], cwd=dest)
        # Only staged changes (the agent's own git add): the work tree may be HEAD's again.
        if staged_only and await self._probe(["diff", "--cached", "--quiet"], dest):
            head = await self._rev_parse(dest, "HEAD")  # the index equals HEAD
            return Saved(head, False, head)
        _, files = await self._commit_listing(dest, gitdir, message, base)
        return Saved(await self._committed_head(dest, gitdir), True, before, files)

    async def _add_and_commit(
        self, dest: Path, gitdir: Path, message: str, base: str | None
    ) -> Saved:
        """Stage everything and commit; if that leaves nothing to commit (the agent undid
        its writes), the head is named as it was."""
        before = committed_head(gitdir)  # before anything moves (two small reads, on the loop)
        await self._run(["add", "--all"], cwd=dest)
        committed, files = await self._commit_listing(dest, gitdir, message, base)
        if committed:
            return Saved(await self._committed_head(dest, gitdir), True, before, files)
        head = before or await self._rev_parse(dest, "HEAD")
        return Saved(head, False, head)

    async def _commit_listing(
        self, dest: Path, gitdir: Path, message: str, base: str | None
    ) -> tuple[bool, list[FileStat] | None]:
        """:meth:`_commit`, and with ``base`` the files the staged index changes from it,
        listed at the same time (the commit's tree is that index; None if nothing was
        committed)."""
        if base is None:
            return await self._commit(dest, message), None
        listing = asyncio.ensure_future(self._staged_files(gitdir, base))
        try:
            committed = await self._commit(dest, message)
        except BaseException:
            listing.cancel()
            await asyncio.gather(listing, return_exceptions=True)
            raise
        files = await listing
        return committed, files if committed else None

    async def _staged_files(self, gitdir: Path, base: str) -> list[FileStat] | None:
        """What a workspace's index (staged, its agent gone) changes from commit ``base``:
        diffed in the server's own repository (as :func:`object_store`), which reads the
        workspace's objects and index and nothing else of it. None if git could not say
        there (an index it cannot read, a timeout): the commit beside it stands, and the
        caller lists the files the slower way."""
        try:
            shadow = await shadow_repo(self.state_dir, base)
            env = {**shadow_env(shadow, gitdir), "GIT_INDEX_FILE": str(gitdir / "index")}
            args = ["diff", "--cached", *_NUMSTAT, base, "--"]
            code, out, _ = await self._exec(args, shadow, None, None, False, env)
            return _numstat(out) if code == 0 else None
        except (GitError, OSError, ValueError):  # ValueError: output not numstat's
            return None

    async def _commit(self, dest: Path, message: str) -> bool:
        """Commit the index; False when it equals HEAD (git's "nothing to commit")."""
        # No automatic maintenance either: a commit would start another git process for it.
        args = ["-c", "commit.gpgSign=false", "-c", "maintenance.auto=false", "-c", "gc.auto=0",
                "commit", "--quiet", "--no-verify", "-m", message]  # fmt: skip
        code, out, err = await self._exec(args, dest, None, None, False)
        if code == 0:
            return True
        if code == 1 and _NOTHING_TO_COMMIT.search(out):
            return False
        raise _failure(args, code, err or out)

    async def _committed_head(self, dest: Path, gitdir: Path) -> str:
        """The head right after the server's own commit: from the files it wrote, else git."""
        head = committed_head(gitdir)  # two small reads: no thread for them
        return head or await self._rev_parse(dest, "HEAD")

    async def push(self, url: str, token: str | None, dest: Path, branch: str) -> None:
        """Push ``branch`` of ``dest`` to the same branch at ``url`` (never forced).

        Raises GitError with the remote's reason (hook output, non-fast-forward) on
        rejection; the workspace and its commits are left as they were.
        """
        self._check_url(url)
        _check_branch(branch)
        await self._trust_workspace(dest, url)
        ref = f"refs/heads/{branch}"
        await self._run(
            ["push", "--quiet", "--porcelain", url, f"{ref}:{ref}"],
            cwd=dest, url=url, token=token,
        )  # fmt: skip
        # A push to a URL updates no remote-tracking ref; keep origin/<branch> truthful.
        sha = await self._rev_parse(dest, ref)
        await self._run(["update-ref", f"refs/remotes/origin/{branch}", sha], cwd=dest)

    # -- diffs -----------------------------------------------------------------------

    async def diff_stats(
        self, dest: Path, base: str, head: str = "HEAD", commits: list[str] | None = None
    ) -> DiffStats:
        """Files changed (lines added/removed each), and the commits, of ``base..head``
        (``commits`` when the caller knows them: git lists them otherwise).

        With full commit ids this reads only the workspace's objects and changes nothing
        there (safe while an agent works in it); another revision (``HEAD``, a branch) is
        first resolved in the workspace, which makes its git directory trustworthy.
        """
        base_sha = await self._commit_id(dest, base)
        head_sha = await self._commit_id(dest, head)
        cwd, env = await object_store(dest, base_sha, self.state_dir)
        if commits is None:
            # Both ends peeled to commits: GitError unless each is one (in the workspace).
            listed = await self._run(
                ["rev-list", "--reverse", f"{base_sha}^{{commit}}..{head_sha}^{{commit}}", "--"],
                cwd=cwd, env=env,
            )  # fmt: skip
            commits = listed.split()
        numstat = await self._run(["diff", *_NUMSTAT, base_sha, head_sha, "--"], cwd=cwd, env=env)
        return DiffStats(base_sha, head_sha, commits, _numstat(numstat))

    async def unified_diff(self, dest: Path, base: str, head: str = "HEAD") -> str:
        """The unified diff of ``base..head`` (like :meth:`diff_stats`: with full commit ids
        it changes nothing in the workspace)."""
        base_sha = await self._commit_id(dest, base)
        head_sha = await self._commit_id(dest, head)
        cwd, env = await object_store(dest, base_sha, self.state_dir)
        return await self._run(
            ["diff", "--no-color", "--no-renames", "--no-ext-diff", "--no-textconv",
             f"{base_sha}^{{commit}}", f"{head_sha}^{{commit}}", "--"],
            cwd=cwd, env=env,
        )  # fmt: skip

    # -- internals -------------------------------------------------------------------

    def _check_url(self, url: str) -> None:
        """Defence in depth behind the repoUrl policy: only plain https (http when allowed)
        URLs without credentials ever reach git."""
        parts = urlsplit(url)
        schemes = ("https", "http") if self.allow_http else ("https",)
        if parts.scheme not in schemes or not parts.hostname or "@" in parts.netloc:
            raise GitError(f"refusing git URL {_redact_url(url)!r}: must be {'/'.join(schemes)}")
        if any(ord(c) < 0x21 or c == "\x7f" for c in url):
            raise GitError("refusing git URL: contains whitespace or control characters")

    async def head(self, dest: Path) -> str:
        """The commit checked out in ``dest``."""
        await self._trust_workspace(dest)
        return await self._rev_parse(dest, "HEAD")

    async def _rev_parse(self, dest: Path, rev: str, env: dict[str, str] | None = None) -> str:
        out = await self._run(["rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=dest, env=env)
        return out.strip()

    async def _commit_id(self, dest: Path, rev: str) -> str:
        """``rev`` if it is a full object id; otherwise resolved in the (trusted) workspace."""
        if _FULL_OID.fullmatch(rev):
            return rev
        await self._trust_workspace(dest)
        return await self._rev_parse(dest, rev)

    async def _trust_workspace(self, dest: Path, url: str | None = None) -> Path:
        """Make the workspace's git directory safe for the server's git: a plain directory
        (not a link or a ``gitdir:`` file) with no symlink in it and no ``commondir``
        redirect, no alternates, no ``info/attributes``, and a config holding only harmless
        keys. With ``url`` (before a token is used) ``origin`` is set to it; without, the
        url and fetch refspec of ``origin`` are kept as they are.

        GitError when the layout is refused (nothing is changed then)."""
        gitdir = await asyncio.to_thread(checked_git_dir, dest, objects_only=False)
        config = gitdir / "config"
        try:
            current: bytes | None = config.read_bytes()
        except FileNotFoundError:
            current = None
        known = self._trusted.get(current) if current is not None else None
        if known is not None:
            # Byte for byte a config the server wrote: its entries are the ones written (no
            # git process needed to list them again).
            entries = known
        else:
            listing = ""
            if current is not None:
                # Read as a plain file, outside any repository: nothing in it is acted upon.
                listing = await self._run(
                    ["config", "--file", str(config), "--no-includes", "--list", "-z"],
                    cwd=self.state_dir,
                )
            entries = []
            for entry in listing.split("\0"):
                key, _, value = entry.partition("\n")
                entries.append((key, value))
        kept: list[tuple[str, str]] = []
        for key, value in entries:
            if key and (SAFE_CONFIG.match(key) or (url is None and ORIGIN_CONFIG.match(key))):
                kept.append((key, value))
        if url is not None:
            kept.append(("remote.origin.url", url))
            kept.append(("remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*"))
        for directory in drop_git_files(gitdir):  # a few lstat calls, on the loop
            await asyncio.to_thread(shutil.rmtree, directory)
        text = config_text(kept).encode()
        self._remember(text, kept)
        if current == text:
            return gitdir  # already exactly that (a plain file: checked_git_dir saw no symlink)
        staging = gitdir / f"config.agentyard-{uuid.uuid4().hex[:8]}"
        try:
            staging.write_bytes(text)
            os.replace(staging, config)
        finally:
            staging.unlink(missing_ok=True)
        return gitdir

    def _remember(self, text: bytes, kept: list[tuple[str, str]]) -> None:
        """Note a config text the server wrote and its entries (a bounded memory: most
        workspaces share a handful of texts)."""
        self._trusted.pop(text, None)
        self._trusted[text] = list(kept)
        while len(self._trusted) > _TRUSTED_MEMORY:
            del self._trusted[next(iter(self._trusted))]

    @contextlib.asynccontextmanager
    async def _mirror_lock(self, mirror: Path) -> AsyncIterator[None]:
        """Exclusive use of one mirror: an asyncio lock within this process, a file lock
        across processes sharing the cache (polled, so it has a timeout and can be
        cancelled)."""
        loop = asyncio.get_running_loop()
        locks = self._locks.setdefault(loop, {})
        lock = locks.setdefault(mirror, asyncio.Lock())
        async with lock:
            fd = os.open(mirror.with_name(mirror.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                deadline = time.monotonic() + self.timeout
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except OSError as exc:
                        if exc.errno not in (errno.EAGAIN, errno.EACCES):
                            raise
                    if time.monotonic() > deadline:
                        raise GitError(f"timed out waiting for the lock on mirror {mirror.name}")
                    await asyncio.sleep(_LOCK_POLL_SECONDS)
                yield
            finally:
                os.close(fd)  # closing the descriptor releases the flock


# -- diffs -------------------------------------------------------------------------------

_NUMSTAT = ["--numstat", "-z", "--no-renames", "--no-ext-diff", "--no-textconv"]


def _numstat(text: str) -> list[FileStat]:
    """``git diff --numstat -z`` (without renames): a file per record."""
    files = []
    for record in text.split("\0"):
        if not record:
            continue
        added, removed, path = record.split("\t", 2)
        binary = added == "-"
        files.append(
            FileStat(path, 0 if binary else int(added), 0 if binary else int(removed), binary)
        )
    return files


# -- names -------------------------------------------------------------------------------


def mirror_name(url: str) -> str:
    """The mirror directory for ``url``: readable, and unique by a hash of the URL."""
    key = url.strip().rstrip("/").removesuffix(".git")
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    readable = _slug(key.rsplit("/", 1)[-1], 40) or "repo"
    return f"{readable}-{digest}.git"


def _slug(text: str, limit: int) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:limit].rstrip("-")


_BAD_REF = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//|/\.|\.lock(/|$)")


def _check_branch(name: str) -> None:
    """git's ref-name rules (``git check-ref-format --branch``), checked before the name is
    ever an argument, so it can never be taken for an option."""
    if (
        not name
        or name.startswith(("-", "/", "."))
        or name.endswith(("/", "."))
        or name == "@"
        or _BAD_REF.search(name)
    ):
        raise GitError(f"invalid branch name {name!r}")
