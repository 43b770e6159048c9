"""The bubblewrap sandbox's own bookkeeping, in process."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import pytest

from agentyard.sandbox.base import SandboxRequest
from agentyard.sandbox.bwrap import BwrapSandbox, runtime_parent


async def test_stale_runtime_dirs_of_dead_processes_are_removed(tmp_path: Path) -> None:
    """A runtime directory left by a process that died (kill -9) is removed at the next
    start; a live process's is kept."""
    dead = await asyncio.create_subprocess_exec("true")
    await dead.wait()
    sandbox = BwrapSandbox(data_dir=tmp_path / "data")
    parent = sandbox.runtime_dir.parent
    stale = parent / f"agentyard-sandbox-{dead.pid}-test"
    alive = parent / f"agentyard-sandbox-{os.getpid()}-test"
    for path in (stale, alive):
        path.mkdir()
        (path / "model.sock").write_text("")
    await sandbox.start()
    try:
        assert not stale.exists() and alive.exists()
    finally:
        await sandbox.stop()
        (alive / "model.sock").unlink()
        alive.rmdir()
    assert not sandbox.runtime_dir.exists()


async def test_a_run_leaves_nothing_behind(tmp_path: Path) -> None:
    """Leaving a confinement revokes its token and removes its scripts and cgroups."""
    (tmp_path / "ws").mkdir()
    (tmp_path / "state").mkdir()
    sandbox = BwrapSandbox(data_dir=tmp_path / "data")
    await sandbox.start()
    try:
        request = SandboxRequest("unit-run", tmp_path / "ws", tmp_path / "state")
        async with sandbox.confine(request) as confined:
            env = confined.environment({"FOO": "bar"})
            script = Path(confined.command("sh", env))
            proc = await asyncio.create_subprocess_exec(
                str(script), "-c", "echo $FOO $HOME; id -u", env=env, stdout=asyncio.subprocess.PIPE
            )
            out, _ = await proc.communicate()
            assert out.decode().split() == ["bar", "/home/agent", "1000"]
            token = confined.token
            cgroups = list(confined.cgroups)
        assert not script.exists()
        assert sandbox.proxy.authorise([(b"x-api-key", token.encode())]) is None
        assert all(not path.exists() for path in cgroups)
    finally:
        await sandbox.stop()


def test_the_runtime_directory_is_in_memory_unless_tmpdir_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/dev/shm where it may hold executables (each run's wrapper script is written and
    removed there); TMPDIR, when set, is obeyed."""
    monkeypatch.delenv("TMPDIR", raising=False)
    shm = Path("/dev/shm")
    usable = shm.is_dir() and not os.statvfs(shm).f_flag & os.ST_NOEXEC
    assert runtime_parent() == (shm if usable else Path(tempfile.gettempdir()))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    assert runtime_parent() == tmp_path
