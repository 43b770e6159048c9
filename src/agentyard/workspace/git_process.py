"""Running the git CLI for the server: a controlled environment, the askpass script that
hands out a token only to the host it is meant for, the transports allowed, one process
group per call, a timeout and a cancellation path.

The host's git configuration, credential helpers and ``.netrc`` are kept out (controlled
``HOME``, no system or global config), hooks and fsmonitor are off on every command line, and
a token is never in argv, a URL or a file: git asks the askpass script, which prints
``$AGENTYARD_GIT_TOKEN`` only when git is talking to the host the call was made for. Errors
name the subcommand and never contain the token.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

from agentyard.core.spawning import EXEC_WRITE_LOCK, kill_group

TOKEN_ENV = "AGENTYARD_GIT_TOKEN"
HOST_ENV = "AGENTYARD_GIT_HOST"
TOKEN_USERNAME = "x-access-token"

# git calls askpass with a prompt: "Username for 'https://host': " or
# "Password for 'https://x-access-token@host': ". The password is printed only when the
# prompt names the host of this call, so a redirect to another host never gets the token.
_ASKPASS = f"""#!/bin/sh
# Written by agentyard: git's credentials come from the environment, never from disk.
case "$1" in
  Username*) echo {TOKEN_USERNAME} ;;
  Password*"@${HOST_ENV}'"*) printf '%s\\n' "${TOKEN_ENV}" ;;
  *) exit 1 ;;
esac
"""

# Passed through from the server's environment: how to reach the network, and nothing else
# (no GIT_* variables, no XDG config, no secrets of other services).
_PASSTHROUGH_ENV = (
    "PATH",
    "TMPDIR",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
)

_STDERR_TAIL = 800


class GitError(Exception):
    """A git command failed. The message names the subcommand and ends with the tail of
    git's stderr; it never contains the token."""

    def __init__(self, message: str, command: str = "", stderr: str = "") -> None:
        super().__init__(message)
        self.command = command
        self.stderr = stderr


class GitProcess:
    """Runs git. ``state_dir`` holds the askpass script and the ``HOME`` git sees; it should
    be private to the server (it is created with mode 0700)."""

    def __init__(
        self,
        state_dir: Path,
        *,
        timeout: float,
        author_name: str,
        author_email: str,
        allow_http: bool,
        git: str,
    ) -> None:
        self.timeout = timeout
        self.author_name = author_name
        self.author_email = author_email
        self.allow_http = allow_http
        self.git = git
        self.state_dir = state_dir
        self.home = state_dir / "home"
        self.askpass = state_dir / "askpass.sh"
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        state_dir.chmod(0o700)
        self._write_askpass()

    def _write_askpass(self) -> None:
        if self.askpass.exists() and self.askpass.read_text() == _ASKPASS:
            self.askpass.chmod(0o700)
            return
        # Written aside and renamed, so a concurrent git never runs a half-written script.
        staging = self.askpass.with_name(f".askpass.{uuid.uuid4().hex}")
        with EXEC_WRITE_LOCK:  # see agentyard.core.spawning
            fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700)
            with os.fdopen(fd, "w") as fh:
                fh.write(_ASKPASS)
        os.replace(staging, self.askpass)

    def _env(self, url: str | None, token: str | None, allow_file: bool) -> dict[str, str]:
        env = {name: os.environ[name] for name in _PASSTHROUGH_ENV if name in os.environ}
        env.setdefault("PATH", os.defpath)
        protocols = ["https", *(["http"] if self.allow_http else [])]
        env.update(
            {
                "HOME": str(self.home),
                "LC_ALL": "C",
                "LANG": "C",
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_CONFIG_GLOBAL": os.devnull,
                "GIT_TERMINAL_PROMPT": "0",
                # Objects are what they are: refs/replace in a workspace substitutes nothing.
                "GIT_NO_REPLACE_OBJECTS": "1",
                "GCM_INTERACTIVE": "never",
                "GIT_ASKPASS": str(self.askpass),
                # Overrides every config file, including a repository's own.
                "GIT_ALLOW_PROTOCOL": "file" if allow_file else ":".join(protocols),
                "GIT_AUTHOR_NAME": self.author_name,
                "GIT_AUTHOR_EMAIL": self.author_email,
                "GIT_COMMITTER_NAME": self.author_name,
                "GIT_COMMITTER_EMAIL": self.author_email,
            }
        )
        if token and url:
            env[TOKEN_ENV] = token
            env[HOST_ENV] = urlsplit(url).netloc
        return env

    def _argv(self, args: list[str], allow_file: bool) -> list[str]:
        http = "always" if self.allow_http else "never"
        return [
            self.git,
            "-c", "protocol.allow=never",
            "-c", "protocol.https.allow=always",
            "-c", f"protocol.http.allow={http}",
            "-c", f"protocol.file.allow={'always' if allow_file else 'never'}",
            "-c", "credential.helper=",
            "-c", "core.hooksPath=/dev/null",
            "-c", "core.fsmonitor=false",
            *args,
        ]  # fmt: skip

    async def _run(
        self,
        args: list[str],
        *,
        cwd: Path,
        url: str | None = None,
        token: str | None = None,
        allow_file: bool = False,
        env: dict[str, str] | None = None,
    ) -> str:
        """Run git in ``cwd`` (with ``env`` added to its environment); its stdout, or
        GitError naming the subcommand."""
        code, out, err = await self._exec(args, cwd, url, token, allow_file, env)
        if code != 0:
            raise _failure(args, code, _scrub(err, token))
        return out

    async def _probe(self, args: list[str], cwd: Path) -> bool:
        """A yes/no question (``--quiet`` commands): exit 0 is yes, 1 is no."""
        code, _, err = await self._exec(args, cwd, None, None, False)
        if code not in (0, 1):
            raise _failure(args, code, err)
        return code == 0

    async def _exec(
        self,
        args: list[str],
        cwd: Path,
        url: str | None,
        token: str | None,
        allow_file: bool,
        extra_env: dict[str, str] | None = None,
    ) -> tuple[int, str, str]:
        """Run git; its exit code, stdout and stderr. Killed with its process group on
        timeout (GitError) or cancellation."""
        # An empty token means none (public repositories); a token must fit on one line of
        # askpass output.
        if token and (not token.isprintable() or " " in token):
            raise GitError("the git token contains whitespace or control characters")
        cwd = cwd.resolve()
        env = self._env(url, token, allow_file)
        # git must find no repository above cwd (e.g. the server's own checkout).
        env["GIT_CEILING_DIRECTORIES"] = str(cwd.parent)
        env.update(extra_env or {})
        call = _Call(self._argv(args, allow_file), cwd, env, self.timeout)
        future = asyncio.get_running_loop().run_in_executor(_THREADS, call.run)
        try:
            code, out, err = await asyncio.shield(future)
        except asyncio.CancelledError:
            call.cancel()  # git, its remote helper and askpass share the group
            with contextlib.suppress(BaseException):
                await future
            raise
        except subprocess.TimeoutExpired:
            command = _subcommand(args)
            raise GitError(f"git {command} timed out after {self.timeout:g}s", command) from None
        return code, out.decode(errors="replace"), err.decode(errors="replace")


# git runs from these threads, blocking: subprocess starts it with vfork, which costs the
# same whatever the server's size, where the event loop's own spawn (uvloop: fork) copies
# the server's page tables, stalls the loop meanwhile and took 15 ms a process. Enough
# threads that slow network calls (a clone, a push) never hold up the quick local ones.
_THREADS = ThreadPoolExecutor(max_workers=32, thread_name_prefix="agentyard-git")


class _Call:
    """One git process, run blocking in a thread; cancellable from the event loop."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> None:
        self.argv, self.cwd, self.env, self.timeout = argv, cwd, env, timeout
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._cancelled = False

    def run(self) -> tuple[int, bytes, bytes]:
        """Exit code, stdout and stderr; ``subprocess.TimeoutExpired`` after the timeout
        (the group killed and reaped)."""
        with self._lock:
            if self._cancelled:
                return -1, b"", b""
            with EXEC_WRITE_LOCK:  # see agentyard.core.spawning
                proc = self._proc = subprocess.Popen(
                    self.argv,
                    cwd=self.cwd,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                )
        try:
            out, err = proc.communicate(timeout=self.timeout)
        except BaseException:
            kill_group(proc.pid)
            proc.communicate()
            raise
        return proc.returncode, out, err

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            if self._proc is not None and self._proc.returncode is None:
                kill_group(self._proc.pid)


def _subcommand(args: list[str]) -> str:
    """The git command ``args`` run, past any ``-c name=value`` before it."""
    i = 0
    while i + 1 < len(args) and args[i] == "-c":
        i += 2
    return args[i] if i < len(args) else "git"


def _failure(args: list[str], code: int, stderr: str) -> GitError:
    command = _subcommand(args)
    tail = stderr.strip()[-_STDERR_TAIL:]
    message = f"git {command} failed (exit {code})" + (f": {tail}" if tail else "")
    return GitError(message, command, tail)


_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


def _scrub(text: str, token: str | None) -> str:
    if token:
        text = text.replace(token, "***")
    return _URL_CREDENTIALS.sub("***@", text)


def _redact_url(url: str) -> str:
    return _URL_CREDENTIALS.sub("***@", url)
