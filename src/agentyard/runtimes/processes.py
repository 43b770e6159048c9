"""Finding and killing an agent's whole process tree.

Every agent process is started with ``AGENTYARD_RUN_ID=<run id>`` in its environment; its
children inherit it, including those that leave the process group or are re-parented to init.
Scanning ``/proc`` for that marker finds them all. Beside it, ``AGENTYARD_INSTALLATION=<id>``
names the installation (:func:`installation_id`), so that a reaper looking for orphans can
leave alone the agents of another installation on the same machine.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import time
from pathlib import Path

from agentyard.runtimes.base import INSTALLATION_ENV, RUN_MARKER_ENV


def installation_id(data_dir: Path) -> str:
    """The installation whose data directory is ``data_dir``: a short hash of its resolved
    path, so every process of one installation (on shared storage: mounted at one path)
    agrees on it, and two installations differ."""
    resolved = str(data_dir.expanduser().resolve())
    return hashlib.sha256(resolved.encode()).hexdigest()[:16]


def marked_pids(run_id: str, installation: str | None = None) -> list[int]:
    """Live processes whose environment carries this run's marker (and, with
    ``installation``, that installation's marker)."""
    return marked_processes(installation).get(run_id, [])


def marked_processes(installation: str | None = None) -> dict[str, list[int]]:
    """Every live agent process on this machine, by the run id it carries. With
    ``installation``, only the processes that also carry that installation's marker."""
    prefix = f"{RUN_MARKER_ENV}=".encode()
    installation_prefix = f"{INSTALLATION_ENV}=".encode()
    wanted = None if installation is None else installation.encode()
    found: dict[str, list[int]] = {}
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid == me:
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                environ = fh.read()
        except OSError:
            continue
        run: bytes | None = None
        owner: bytes | None = None
        for var in environ.split(b"\0"):
            # The first occurrence of a name is the one the process sees.
            if run is None and var.startswith(prefix):
                run = var[len(prefix) :]
            elif owner is None and var.startswith(installation_prefix):
                owner = var[len(installation_prefix) :]
        if run is None or (wanted is not None and owner != wanted) or _is_zombie(pid):
            continue
        found.setdefault(run.decode(errors="replace"), []).append(pid)
    return found


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return True
    # The state letter follows the parenthesised command name.
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] in (b"Z", b"X")


def kill_run_processes(
    run_id: str, grace_seconds: float = 0.0, installation: str | None = None
) -> int:
    """SIGTERM (if a grace period is given) then SIGKILL every process of the run (with
    ``installation``: only those carrying that installation's marker too).

    Returns how many processes were signalled. Safe to call from a thread.
    """
    pids = marked_pids(run_id, installation)
    if not pids:
        return 0
    signalled = set(pids)
    if grace_seconds > 0:
        _signal_all(pids, signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        while time.monotonic() < deadline and marked_pids(run_id, installation):
            time.sleep(0.05)
    for _ in range(20):
        pids = marked_pids(run_id, installation)
        if not pids:
            break
        signalled.update(pids)
        _signal_all(pids, signal.SIGKILL)
        time.sleep(0.05)
    return len(signalled)


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
