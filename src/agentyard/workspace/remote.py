"""Git against remote repositories: cached mirrors, clones, fetch and push.

A token reaches git only through the environment, read back by an askpass script: never in
argv, a URL or ``.git/config``, and it is scrubbed from every error message.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import ipaddress
import os
import shutil
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from agentyard.core.errors import InvalidInput
from agentyard.core.repo_rules import RepoUrl

_TOKEN_ENV = "AGENTYARD_GIT_TOKEN"
_ASKPASS = """#!/bin/sh
case "$1" in
  Username*) echo "x-access-token" ;;
  *) echo "$AGENTYARD_GIT_TOKEN" ;;
esac
"""


class GitError(Exception):
    """A git command against a remote failed (the message never holds the token)."""


class Remotes:
    def __init__(self, state_dir: Path, timeout: float = 300.0) -> None:
        self.mirrors = state_dir / "mirrors"
        self.timeout = timeout
        self.askpass = state_dir / "git-askpass.sh"
        self._locks: dict[Path, asyncio.Lock] = {}

    def _ensure_askpass(self) -> None:
        if not self.askpass.exists():
            self.askpass.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.askpass.with_name(f".askpass.{uuid.uuid4().hex[:8]}")
            tmp.write_text(_ASKPASS)
            tmp.chmod(0o700)
            tmp.rename(self.askpass)

    async def default_branch(self, repo: RepoUrl, token: str | None) -> str:
        out = await self.git(None, repo, token, "ls-remote", "--symref", repo.url, "HEAD")
        for line in out.splitlines():
            if line.startswith("ref: refs/heads/"):
                return line.split("\t", 1)[0].removeprefix("ref: refs/heads/")
        raise GitError(f"cannot tell the default branch of {repo.url}")

    async def remote_has_branch(self, repo: RepoUrl, token: str | None, branch: str) -> bool:
        out = await self.git(
            None, repo, token, "ls-remote", "--heads", repo.url, f"refs/heads/{branch}"
        )
        return bool(out.strip())

    async def mirror(self, repo: RepoUrl, token: str | None) -> Path:
        """The repository's bare mirror, cloned once and fetched afterwards."""
        path = self.mirrors / (hashlib.sha256(repo.url.encode()).hexdigest()[:24] + ".git")
        lock = self._locks.setdefault(path, asyncio.Lock())
        async with lock:
            self.mirrors.mkdir(parents=True, exist_ok=True)
            async with _file_lock(path.with_suffix(".lock")):
                if (path / "HEAD").exists():
                    await self.git(path, repo, token, "remote", "update", "--prune")
                else:
                    staging = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
                    try:
                        await self.git(
                            None, repo, token, "clone", "--mirror", "-q", repo.url, str(staging)
                        )
                        staging.rename(path)
                    finally:
                        shutil.rmtree(staging, ignore_errors=True)
        return path

    async def clone(self, repo: RepoUrl, mirror: Path, dest: Path, branch: str) -> None:
        """A working copy of ``branch`` from the local mirror, with ``origin`` the real URL."""
        await self.git(
            None,
            repo,
            None,
            "clone",
            "-q",
            "--no-hardlinks",
            "-b",
            branch,
            str(mirror),
            str(dest),
            local=True,
        )
        await self.git(dest, repo, None, "remote", "set-url", "origin", repo.url)

    async def fetch(self, dest: Path, repo: RepoUrl, token: str | None, branch: str) -> None:
        await self.git(
            dest,
            repo,
            token,
            "fetch",
            "-q",
            "origin",
            f"+refs/heads/{branch}:refs/remotes/origin/{branch}",
        )

    async def push(self, dest: Path, repo: RepoUrl, token: str | None, branch: str) -> None:
        await self.git(dest, repo, token, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")

    async def git(
        self,
        cwd: Path | None,
        repo: RepoUrl,
        token: str | None,
        *args: str,
        local: bool = False,
    ) -> str:
        """One git command; killed with its children on timeout or cancellation."""
        self._ensure_askpass()
        protocols = ["-c", "protocol.allow=never", "-c", f"protocol.{repo.scheme}.allow=always"]
        if local:
            protocols += ["-c", "protocol.file.allow=always"]
        env = {
            **os.environ,
            "GIT_ASKPASS": str(self.askpass),
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            _TOKEN_ENV: token or "",
        }
        proc = await asyncio.create_subprocess_exec(
            "git",
            "-c",
            "credential.helper=",
            "-c",
            "core.hooksPath=/dev/null",
            *protocols,
            *args,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.timeout)
        except BaseException as exc:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            if isinstance(exc, TimeoutError):
                raise GitError(f"git {args[0]} timed out after {self.timeout:g} s") from None
            raise
        if proc.returncode != 0:
            detail = err.decode(errors="replace").strip()
            if token:
                detail = detail.replace(token, "***")
            raise GitError(f"git {args[0]} failed: {detail[-600:]}")
        return out.decode(errors="replace")


@contextlib.asynccontextmanager
async def _file_lock(path: Path) -> AsyncIterator[None]:
    """Serialise processes sharing a data directory on the same mirror (waiting off-loop)."""
    with open(path, "a") as fh:  # noqa: ASYNC230 - opening a lock file does not block
        await asyncio.to_thread(fcntl.flock, fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


async def check_resolves_publicly(repo: RepoUrl, private_hosts: list[str]) -> None:
    """Refuse a host resolving to loopback/private/reserved addresses unless allowed."""
    if repo.host in {h.lower() for h in private_hosts}:
        return
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(repo.host, repo.port or 443), timeout=10)
    except (OSError, TimeoutError):
        raise InvalidInput(f"repoUrl host {repo.host!r} does not resolve") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise InvalidInput(
                f"repoUrl host {repo.host!r} resolves to a non-public address ({address}); "
                "allow it explicitly to use it"
            )
