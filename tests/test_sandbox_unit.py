"""The bubblewrap sandbox's own bookkeeping, in process."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import pytest

from agentyard.sandbox.base import SandboxRequest
from agentyard.sandbox.bwrap import BwrapSandbox, runtime_parent
from agentyard.sandbox.cgroups import FavouredMoves, favouring_mounts


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


MOUNTINFO = "\n".join(
    [
        "29 23 0:26 / /sys/fs/cgroup/pids rw,relatime shared:9 - cgroup cgroup rw,pids",
        "41 23 0:38 / /dev/shm/agentyard-sandbox-7-x/cgroup-moves rw,relatime"
        " - cgroup cgroup rw,favordynmods,name=agentyard",
        "42 23 0:39 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate,favordynmods",
        "43 23 0:40 / /mnt/x rw - ext4 /dev/vda rw,favordynmods",
    ]
)


def test_favouring_mounts_are_read_from_mountinfo() -> None:
    assert favouring_mounts(MOUNTINFO) == [
        ("/dev/shm/agentyard-sandbox-7-x/cgroup-moves", True),
        ("/sys/fs/cgroup/unified", False),
    ]


async def test_cgroup_moves_are_favoured_while_the_sandbox_runs(tmp_path: Path) -> None:
    """As root on a kernel that has ``favordynmods`` (the project's machines), a sandbox
    with per-run cgroups mounts its hierarchy so at start and unmounts it at stop; where
    the kernel or the user cannot, or the machine favours moves already, it mounts
    nothing."""
    sandbox = BwrapSandbox(data_dir=tmp_path / "data")
    point = str(sandbox.runtime_dir / "cgroup-moves")
    machine_favours = any(not ours for _, ours in favouring_mounts())
    await sandbox.start()
    try:
        mounted = (point, True) in favouring_mounts()
        able = os.geteuid() == 0 and not _kernel_before(6, 2)
        if sandbox.cgroups.hierarchies and able and not machine_favours:
            assert mounted, favouring_mounts()
        else:
            assert not mounted
    finally:
        await sandbox.stop()
    assert (point, True) not in favouring_mounts()
    assert not sandbox.runtime_dir.exists()


async def test_a_killed_servers_favouring_mount_is_released(tmp_path: Path) -> None:
    """The hierarchy a server killed with -9 left mounted in its runtime directory is
    unmounted before that directory is removed (never a walk into cgroupfs)."""
    if os.geteuid() != 0 or _kernel_before(6, 2):
        pytest.fail("needs root on kernel 6.2 or newer, as the project's machines are")
    dead = await asyncio.create_subprocess_exec("true")
    await dead.wait()
    stale = runtime_parent() / f"agentyard-sandbox-{dead.pid}-test"
    stale.mkdir()
    moves = FavouredMoves(stale / "cgroup-moves")
    assert moves.enable() in ("favoured", "already")
    sandbox = BwrapSandbox(data_dir=tmp_path / "data")
    await sandbox.start()
    await sandbox.stop()
    assert not stale.exists()
    assert all(not p.startswith(str(stale)) for p, _ in favouring_mounts())


def _kernel_before(major: int, minor: int) -> bool:
    release = os.uname().release.split("-")[0].split(".")
    return (int(release[0]), int(release[1])) < (major, minor)
