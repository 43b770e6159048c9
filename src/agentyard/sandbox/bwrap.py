"""The bubblewrap sandbox: each run's agent, and everything it spawns, confined.

Inside: its own user (uid 1000, no capabilities, no further user namespaces), PID, IPC,
UTS and network namespaces; read-only system directories, an ``/etc`` of its own (a copy of
what agents need, with a synthetic ``passwd``: :mod:`agentyard.sandbox.etc`), the
runtimes' own installs read-only; the chat's workspace and agent state read-write; a private
``/tmp`` and ``$HOME``; nothing of the data directory, other workspaces or the server's home.
The network namespace holds only a loopback bridge to the host-side model proxy, so the
agent reaches its model with a per-run token and never sees a provider key. The sandbox dies
with the process that started it, and its PID namespace takes every leftover process along.

A runtime starts its agent through a small per-run script (``Confinement.command``) that
moves itself into the run's cgroups, keeps only the agent's own environment variables and
execs bubblewrap: the SDKs spawn that script as if it were their CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import structlog

from agentyard.core.spawning import EXEC_WRITE_LOCK, process_alive
from agentyard.sandbox import bridge
from agentyard.sandbox.base import (
    SANDBOX_HOME,
    SANDBOX_PATH,
    Endpoint,
    Limits,
    SandboxRequest,
    SandboxUnavailable,
)
from agentyard.sandbox.cgroups import Cgroups, FavouredMoves, release_moves_mount
from agentyard.sandbox.etc import UID, make_etc
from agentyard.sandbox.native import build_bridge
from agentyard.sandbox.proxy import EgressPolicy, ModelProxy, Upstream

log = structlog.get_logger(__name__)

# Not 10080: that is on the Fetch standard's list of "bad ports", which Node's fetch (the
# Gemini CLI's HTTP client) refuses to connect to.
BRIDGE_PORT = 18080
"""The model bridge's port inside every sandbox (each has its own network namespace)."""
_INSIDE = "/run/agentyard"
_RUNTIME_PREFIX = "agentyard-sandbox-"
_MOVES_DIR = "cgroup-moves"
"""In the runtime directory: the mount point of ``FavouredMoves``."""

_TOP = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


def find_bwrap() -> str | None:
    return shutil.which("bwrap")


@dataclass
class _Run:
    """One run's confinement (the runtime's view is the Confinement protocol)."""

    sandbox: BwrapSandbox
    request: SandboxRequest
    directory: Path
    token: str
    cgroups: list[Path] = field(default_factory=list)
    kind: str = "bwrap"
    isolated: bool = True
    reaped: bool = False
    """Set at the end: each of the run's processes joined its cgroups before bubblewrap
    started (the wrapper script) and could not leave them, and they were emptied."""

    def environment(self, env: Mapping[str, str]) -> dict[str, str]:
        base = {
            "PATH": SANDBOX_PATH,
            "HOME": SANDBOX_HOME,
            "USER": "agent",
            "LOGNAME": "agent",
            "SHELL": "/bin/sh",
            "LANG": "C.UTF-8",
            "TMPDIR": "/tmp",
            "TERM": "dumb",
            "PWD": str(self.request.workspace),
            **self.sandbox.extra_env,
        }
        if self.sandbox.egress is not None:
            proxy = f"http://127.0.0.1:{BRIDGE_PORT}"
            for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
                base[name] = proxy
            base["NO_PROXY"] = base["no_proxy"] = "127.0.0.1,localhost"
        return {**base, **env, **self.request.marker_env}

    def command(self, executable: str, env: Mapping[str, str]) -> str:
        names = sorted(env)
        for name in names:
            if not name.isidentifier() or not name.isascii():
                raise ValueError(f"invalid environment variable name {name!r}")
        script = self.directory / f"{uuid.uuid4().hex[:8]}-{Path(executable).name}"
        argv = [
            "/usr/bin/env",
            "-i",
            *(f'{name}="${name}"' for name in names),
            *map(shlex.quote, self.sandbox.bwrap_argv(self.request, executable)),
            '"$@"',
        ]
        lines = ["#!/bin/sh", f"# Agentyard: {executable} confined for run {self.request.run_id}"]
        lines += [
            f"echo $$ > {shlex.quote(str(p / 'cgroup.procs'))} || exit 126" for p in self.cgroups
        ]
        lines.append("exec " + " ".join(argv))
        with EXEC_WRITE_LOCK:  # no process forked from a thread holds it open for writing
            fd = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700)
            with os.fdopen(fd, "w") as fh:
                fh.write("\n".join(lines) + "\n")
        return str(script)

    def endpoint(self, route: str, base_url: str, api_key: str, auth: str) -> Endpoint:
        self.sandbox.proxy.route(self.token, route, Upstream(base_url, api_key, auth))
        return Endpoint(f"http://127.0.0.1:{BRIDGE_PORT}/{route}", self.token)


class BwrapSandbox:
    kind = "bwrap"

    def __init__(
        self,
        *,
        data_dir: Path,
        limits: Limits | None = None,
        egress: EgressPolicy | None = None,
        readonly_paths: list[Path] | None = None,
        extra_env: Mapping[str, str] | None = None,
        bwrap: str | None = None,
        bridge: Literal["auto", "native", "python"] = "auto",
        favour_moves: bool = True,
    ) -> None:
        found = bwrap or find_bwrap()
        if found is None:
            raise SandboxUnavailable(
                "bubblewrap is not installed: apt-get install bubblewrap "
                "(or set AGENTYARD_SANDBOX=none to run agents unconfined)"
            )
        self.bwrap = found
        self.data_dir = data_dir
        self.limits = limits or Limits()
        self.egress = egress
        self.extra_env = dict(extra_env or {})
        self.python = os.path.realpath(sys.executable)
        self.readonly = _unique([Path(sys.prefix), Path(sys.base_prefix), *(readonly_paths or [])])
        self.cgroups = Cgroups(self.limits.processes, self.limits.memory_bytes)
        # Private to this process (0700), and short: a Unix socket path has a length limit.
        self.runtime_dir = (
            runtime_parent() / f"{_RUNTIME_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"
        )
        self.proxy = ModelProxy(self.runtime_dir / "model.sock", egress=egress)
        self._runs = self.runtime_dir / "runs"
        self.bridge = bridge
        """Which model bridge starts each sandbox: ``native`` (``bridge.c``, built here),
        ``python`` (``bridge.py``), or ``auto``: the native one where it builds and runs."""
        self._native = False
        self._head: list[str] | None = None
        self.favour_moves = favour_moves
        self._moves = FavouredMoves(self.runtime_dir / _MOVES_DIR)

    def describe(self) -> dict[str, object]:
        return {
            "sandbox": self.kind,
            "network": "allowlist" if self.egress is not None else "model",
            "allowedHosts": list(self.egress.allowed_hosts) if self.egress else [],
            "limits": {
                "processes": self.limits.processes,
                "openFiles": self.limits.open_files,
                "fileBytes": self.limits.file_bytes,
                "memoryBytes": self.limits.memory_bytes,
                "tmpBytes": self.limits.tmp_bytes,
                "cgroups": self.cgroups.describe(),
            },
            "bridge": "native" if self._native else "python",
        }

    async def start(self) -> None:
        await asyncio.to_thread(_remove_stale_runtime_dirs, self.runtime_dir.parent)
        self.runtime_dir.mkdir(mode=0o700)
        self._runs.mkdir(mode=0o700)
        shutil.copyfile(bridge.__file__, self.runtime_dir / "bridge.py")
        await asyncio.to_thread(make_etc, self.runtime_dir / "etc")
        if self.favour_moves and self.cgroups.hierarchies:
            outcome = self._moves.enable()
            log.info("cgroup moves", favoured=outcome in ("favoured", "already"), how=outcome)
        await self.proxy.start()
        try:
            await self._probe(self.bwrap_argv(None, "/bin/true", bridge=False))
            if self.bridge != "python":
                await self._start_native_bridge()
        except SandboxUnavailable:
            await self.stop()
            raise

    async def _start_native_bridge(self) -> None:
        """Use the native bridge if it builds and starts a sandbox here (with ``native``
        it must; with ``auto`` the Python one stays in use otherwise)."""
        built = await asyncio.to_thread(build_bridge, self.runtime_dir)
        if built is None:  # why was logged
            if self.bridge == "native":
                raise SandboxUnavailable("the native model bridge did not build")
            return
        shutil.copyfile(built, self.runtime_dir / "bridge")
        os.chmod(self.runtime_dir / "bridge", 0o755)
        self._native = True
        try:
            await self._probe(self.bwrap_argv(None, "/bin/true"))
        except SandboxUnavailable as exc:
            self._native = False
            if self.bridge == "native":
                raise SandboxUnavailable(f"the native model bridge does not start: {exc}") from None
            log.warning("sandboxes start the Python model bridge", reason=str(exc))

    async def stop(self) -> None:
        await self.proxy.stop()
        self._moves.disable()
        await asyncio.to_thread(shutil.rmtree, self.runtime_dir, True)

    async def _probe(self, argv: list[str]) -> None:
        """bubblewrap may be installed but unable to work (no user namespaces here)."""
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env={},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            _, err = await asyncio.wait_for(proc.communicate(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise SandboxUnavailable("bubblewrap did not start within 20 s") from None
        if proc.returncode != 0:
            raise SandboxUnavailable(
                f"bubblewrap cannot create a sandbox here: {err.decode(errors='replace').strip()}"
            )

    @asynccontextmanager
    async def confine(self, request: SandboxRequest) -> AsyncIterator[_Run]:
        directory = Path(tempfile.mkdtemp(prefix=f"{request.run_id[:24]}-", dir=self._runs))
        token = self.proxy.grant(request.run_id, request.watch)
        run = _Run(self, request, directory, token)
        try:
            run.cgroups = self.cgroups.create(request.run_id)
            yield run
        finally:
            self.proxy.revoke(token)
            # Shielded: a second cancel must not leave the run's cgroups behind.
            emptied = await asyncio.shield(Cgroups.remove(run.cgroups))
            run.reaped = bool(run.cgroups) and emptied
            shutil.rmtree(directory, True)  # its wrapper scripts

    def _fixed_head(self) -> list[str]:
        """The start of every run's command line: namespaces and the system's mounts (read
        off the file system once: it does not change under a running server)."""
        argv = [
            self.bwrap,
            "--unshare-user", "--uid", str(UID), "--gid", str(UID),
            "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net",
            "--unshare-cgroup-try", "--hostname", "agentyard",
            "--disable-userns", "--die-with-parent", "--new-session",
            "--ro-bind", "/usr", "/usr",
        ]  # fmt: skip
        for top in _TOP:
            host = Path("/") / top
            if host.is_symlink():
                argv += ["--symlink", os.readlink(host), str(host)]
            elif host.is_dir():
                argv += ["--ro-bind", str(host), str(host)]
        argv += [
            "--ro-bind", str(self.runtime_dir / "etc"), "/etc",  # see agentyard.sandbox.etc
            "--proc", "/proc", "--dev", "/dev",
        ]  # fmt: skip
        for tmp in ("/tmp", SANDBOX_HOME):
            if self.limits.tmp_bytes > 0:
                argv += ["--size", str(self.limits.tmp_bytes)]
            argv += ["--tmpfs", tmp]
        for path in self.readonly:
            if not _under(path, Path("/usr")):
                argv += ["--ro-bind-try", str(path), str(path)]
        return argv

    def bwrap_argv(
        self, request: SandboxRequest | None, executable: str, *, bridge: bool = True
    ) -> list[str]:
        """bubblewrap's command line that runs ``executable`` (arguments follow it)."""
        if self._head is None:
            self._head = self._fixed_head()
        argv = list(self._head)
        if Path(executable).is_absolute() and not any(
            _under(Path(executable), p) for p in (*self.readonly, Path("/usr"))
        ):
            argv += ["--ro-bind", executable, executable]
        if any(_under(self.data_dir, p) for p in self.readonly):
            argv += ["--tmpfs", str(self.data_dir)]  # under a read-only bind: hide it
        if request is not None:
            for path in (request.workspace, request.state_dir, *request.writable):
                argv += ["--bind", str(path), str(path)]
            for path in request.readable:
                argv += ["--ro-bind", str(path), str(path)]
            argv += ["--chdir", str(request.workspace)]
        if not bridge:
            return [*argv, "--remount-ro", "/", "--", executable]
        if self._native:
            start = [f"{_INSIDE}/bridge"]
            argv += ["--ro-bind", str(self.runtime_dir / "bridge"), f"{_INSIDE}/bridge"]
        else:
            start = [self.python, "-I", "-S", f"{_INSIDE}/bridge.py"]
            argv += ["--ro-bind", str(self.runtime_dir / "bridge.py"), f"{_INSIDE}/bridge.py"]
        argv += [
            "--bind", str(self.proxy.socket_path), f"{_INSIDE}/model.sock",
            "--remount-ro", "/",
            "--", *start,
            "--port", str(BRIDGE_PORT), "--socket", f"{_INSIDE}/model.sock",
        ]  # fmt: skip
        for name, value in (
            ("nofile", self.limits.open_files),
            ("fsize", self.limits.file_bytes),
            ("nproc", self.limits.processes if os.geteuid() != 0 else 0),
            ("core", 0),
        ):
            if value > 0 or name == "core":
                argv += ["--rlimit", f"{name}={value}"]
        return [*argv, "--", executable]


def _under(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def _unique(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        resolved = path.resolve()
        if resolved not in out and not any(_under(resolved, p) for p in out):
            out = [p for p in out if not _under(p, resolved)] + [resolved]
    return out


def runtime_parent() -> Path:
    """Where the runtime directory goes: in memory (``/dev/shm``) where it may hold
    executables, unless ``TMPDIR`` names a place; else the temporary directory. Each run
    writes its wrapper script there and removes it afterwards: on a disk, a few journalled
    metadata writes per run, on the event loop."""
    shm = Path("/dev/shm")
    if "TMPDIR" not in os.environ and shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
        with contextlib.suppress(OSError):
            if not os.statvfs(shm).f_flag & os.ST_NOEXEC:
                return shm
    return Path(tempfile.gettempdir())


def _remove_stale_runtime_dirs(parent: Path) -> None:
    """Runtime directories of processes that died without cleaning up (kill -9)."""
    for path in parent.glob(f"{_RUNTIME_PREFIX}*"):
        pid = path.name.removeprefix(_RUNTIME_PREFIX).split("-", 1)[0]
        if not pid.isdigit() or path.is_symlink() or path.stat().st_uid != os.geteuid():
            continue
        if not process_alive(int(pid)):
            release_moves_mount(path / _MOVES_DIR)
            shutil.rmtree(path, ignore_errors=True)
