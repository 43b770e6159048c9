"""Per-run process and memory limits through cgroups, where this process may create them.

cgroup v2 (a delegated subtree) or the v1 ``pids`` and ``memory`` hierarchies, each
found below this process's own cgroup. Where neither is writable (an unprivileged server
outside a delegated subtree), runs get only the rlimits that the bridge sets.

Moving a process into a cgroup, as every run's wrapper does, waits for an RCU grace period
(12 ms of a trivial run's 22 ms on the project's machine) unless the kernel favours cgroup
changes over forks and exits (``favordynmods``): see ``FavouredMoves``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

_ROOT = Path("/sys/fs/cgroup")
_GROUP = "agentyard"


@dataclass(frozen=True)
class _Hierarchy:
    base: Path
    """``.../<own cgroup>/agentyard``: the runs' cgroups are created here."""
    files: dict[str, str]
    """Limit name -> the file that sets it in this hierarchy."""


class Cgroups:
    def __init__(self, processes: int, memory_bytes: int) -> None:
        self.limits = {"processes": processes, "memory": memory_bytes}
        self.hierarchies = _discover({k for k, v in self.limits.items() if v > 0})

    def describe(self) -> list[str]:
        return sorted({name for h in self.hierarchies for name in h.files})

    def create(self, run_id: str) -> list[Path]:
        """The run's cgroup directories (its processes are moved into each ``cgroup.procs``):
        a mkdir and a write or two in cgroupfs, quick enough for the event loop."""
        made: list[Path] = []
        for hierarchy in self.hierarchies:
            path = hierarchy.base / run_id
            try:
                path.mkdir(exist_ok=True)
                for name, file in hierarchy.files.items():
                    (path / file).write_text(str(self.limits[name]))
            except OSError as exc:
                log.warning("cgroup not created", path=str(path), error=str(exc))
                with contextlib.suppress(OSError):
                    path.rmdir()
                continue
            made.append(path)
        return made

    @staticmethod
    async def remove(paths: list[Path]) -> bool:
        """Kill whatever is still in the run's cgroups, then remove them; whether every one
        was emptied and removed. (An rmdir in cgroupfs when the run's processes are gone, as
        they usually are: no thread for that.)"""
        emptied = True
        for path in paths:
            # Empty, as it usually is, it goes at once; reading cgroup.procs would cost the
            # kernel a pid list to build and, a second later, a worker to free.
            with contextlib.suppress(OSError):
                path.rmdir()
                continue
            # A process just killed (or the sandbox's init, still exiting) is gone within a
            # millisecond or two: look again soon, then less often, for about a second.
            delay = 0.001
            for _ in range(60):
                try:
                    pids = [int(p) for p in (path / "cgroup.procs").read_text().split()]
                except OSError:
                    break
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.02)
            try:
                path.rmdir()
            except OSError:
                emptied = False
        return emptied


def _own_paths() -> dict[str, str]:
    """This process's cgroup path per hierarchy: ``""`` for v2, else the controller names."""
    paths: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for name in controllers.split(",") if controllers else [""]:
                paths[name] = path
    return paths


def _discover(wanted: set[str]) -> list[_Hierarchy]:
    own = _own_paths()
    found: list[_Hierarchy] = []
    if (_ROOT / "cgroup.controllers").exists():
        files = {"processes": "pids.max", "memory": "memory.max"}
        base = _ROOT / own.get("", "/").lstrip("/") / _GROUP
        hierarchy = _prepare(base, {k: v for k, v in files.items() if k in wanted}, v2=True)
        return [hierarchy] if hierarchy else []
    for controller, name, file in (
        ("pids", "processes", "pids.max"),
        ("memory", "memory", "memory.limit_in_bytes"),
    ):
        if name not in wanted or controller not in own:
            continue
        base = _ROOT / controller / own[controller].lstrip("/") / _GROUP
        hierarchy = _prepare(base, {name: file}, v2=False)
        if hierarchy:
            found.append(hierarchy)
    return found


def _prepare(base: Path, files: dict[str, str], *, v2: bool) -> _Hierarchy | None:
    if not files:
        return None
    try:
        base.mkdir(exist_ok=True)
        if v2:
            controllers = " ".join("+" + f.split(".")[0] for f in files.values())
            (base / "cgroup.subtree_control").write_text(controllers)
        probe = base / f"probe-{os.getpid()}"
        probe.mkdir(exist_ok=True)
        ok = all((probe / f).exists() for f in files.values()) and os.access(
            probe / "cgroup.procs", os.W_OK
        )
        probe.rmdir()
    except OSError:
        return None
    return _Hierarchy(base, files) if ok else None


_MOVES_MOUNT = b"none,name=agentyard,favordynmods"
_MNT_DETACH = 2
_LIBC = ctypes.CDLL(None, use_errno=True)
"""mount(2) and umount2(2), which Python's os module does not offer."""


class FavouredMoves:
    """While it is on, the kernel favours moving processes between cgroups over forks and
    exits, for the whole machine: the ``favordynmods`` option of a mounted hierarchy.

    The kernel's default makes every fork and exit take the lock that guards cgroup
    membership without a memory barrier, so a move must first wait for an RCU grace period
    until no reader can be on the fast path. With ``favordynmods`` a fork or exit costs a
    barrier more (nanoseconds, beside a fork's tens of microseconds) and a move waits for
    nothing. It is switched on by mounting an empty named cgroup v1 hierarchy with the
    option, in the sandbox's runtime directory (root only; kernel 6.2 or newer), and the
    hierarchy is unmounted when the sandbox stops (the kernel may go on favouring moves
    until it boots again: kernel 6.18 on the project's machine did). A kernel booted with
    ``cgroup_favordynmods=true``, or a hierarchy already mounted so, needs nothing.
    """

    def __init__(self, mount_point: Path) -> None:
        self.mount_point = mount_point
        self.mounted = False

    def enable(self) -> str:
        """``favoured`` (mounted now), ``already`` (the machine favours moves), or why not."""
        if _favoured_already():
            return "already"
        if os.geteuid() != 0:
            return "not root"
        self.mount_point.mkdir(mode=0o700, exist_ok=True)
        target = os.fsencode(self.mount_point)
        if _LIBC.mount(b"cgroup", target, b"cgroup", ctypes.c_ulong(0), _MOVES_MOUNT) != 0:
            reason = os.strerror(ctypes.get_errno())
            with contextlib.suppress(OSError):
                self.mount_point.rmdir()
            return reason
        self.mounted = True
        return "favoured"

    def disable(self) -> None:
        if self.mounted:
            release_moves_mount(self.mount_point)
            self.mounted = False


def release_moves_mount(mount_point: Path) -> None:
    """Unmount a ``FavouredMoves`` hierarchy (also one a killed server left), and remove its
    mount point; nothing if it is not mounted."""
    failed = _LIBC.umount2(os.fsencode(mount_point), _MNT_DETACH) != 0
    if failed and ctypes.get_errno() not in (errno.EINVAL, errno.ENOENT, errno.EPERM):
        log.warning("cgroup hierarchy not unmounted", path=str(mount_point))
    with contextlib.suppress(OSError):
        mount_point.rmdir()


def favouring_mounts(mountinfo: str | None = None) -> list[tuple[str, bool]]:
    """The cgroup hierarchies mounted with ``favordynmods`` (``/proc/self/mountinfo``'s
    or the text given): each one's mount point and whether it is a server's own."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return []
    found = []
    for line in mountinfo.splitlines():
        before, _, after = line.partition(" - ")
        fields, mounted = after.split(), before.split()
        if len(fields) >= 3 and len(mounted) >= 5 and fields[0] in ("cgroup", "cgroup2"):
            options = fields[2].split(",")
            if "favordynmods" in options:
                found.append((mounted[4], "name=agentyard" in options))
    return found


def _favoured_already() -> bool:
    """Whether a cgroup hierarchy of the machine's own (not another server's, which may
    stop first) favours moves already."""
    return any(not ours for _, ours in favouring_mounts())
