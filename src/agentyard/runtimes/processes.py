"""Finding and killing an agent's whole process tree.

Every agent process is started with ``AGENTYARD_RUN_ID=<run id>`` in its environment; its
children inherit it, including those that leave the process group or are re-parented to init.
Scanning ``/proc`` for that marker finds them all.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

from agentyard.runtimes.base import RUN_MARKER_ENV


def marked_pids(run_id: str) -> list[int]:
    """Live processes whose environment carries this run's marker."""
    return marked_processes().get(run_id, [])


def marked_processes() -> dict[str, list[int]]:
    """Every live agent process on this machine, by the run id it carries."""
    prefix = f"{RUN_MARKER_ENV}=".encode()
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
        for var in environ.split(b"\0"):
            if var.startswith(prefix):
                if not _is_zombie(pid):
                    found.setdefault(var[len(prefix) :].decode(errors="replace"), []).append(pid)
                break
    return found


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return True
    # The state letter follows the parenthesised command name.
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] in (b"Z", b"X")


def kill_run_processes(run_id: str, grace_seconds: float = 0.0) -> int:
    """SIGTERM (if a grace period is given) then SIGKILL every process of the run.

    Returns how many processes were signalled. Safe to call from a thread.
    """
    pids = marked_pids(run_id)
    if not pids:
        return 0
    if grace_seconds > 0:
        _signal_all(pids, signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        while time.monotonic() < deadline and marked_pids(run_id):
            time.sleep(0.05)
    for _ in range(20):
        pids = marked_pids(run_id)
        if not pids:
            break
        _signal_all(pids, signal.SIGKILL)
        time.sleep(0.05)
    return len(pids)


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
