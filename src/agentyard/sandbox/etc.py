"""The sandbox's ``/etc``: a copy, made when the sandbox starts, of what agents need from it.

An agent needs a few files of ``/etc`` (the resolver's configuration, CA certificates, the
dynamic linker's cache, time zone, terminfo) and none of the rest. Binding each one into every
sandbox cost bubblewrap two mount calls apiece, and the kernel as much again to tear each mount
down: about 7 ms of CPU per run for 25 entries, a quarter of a trivial run's whole cost. So
the allowed entries are copied once into the server's private runtime directory, beside a
synthetic ``passwd`` and ``group``, and that one directory is bound read-only as ``/etc``.

Only what any user of the host may read is copied: a file must be readable by others and a
directory searchable by them. That keeps out ``/etc/ssl/private`` and the like, which the
sandbox's user would otherwise reach when the server runs as root (it maps to the server's
own uid, the owner of such files).

The copy is a snapshot: entries changed on the host later (new CA certificates, say) reach
sandboxes when the server restarts.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import structlog

from agentyard.sandbox.base import SANDBOX_HOME

log = structlog.get_logger(__name__)

UID = 1000
"""The agent's uid (and gid) inside every sandbox."""

ALLOWED = (
    "hosts",
    "resolv.conf",
    "nsswitch.conf",
    "host.conf",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "pki",
    "alternatives",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "timezone",
    "mime.types",
    "protocols",
    "services",
    "os-release",
    "debian_version",
    "inputrc",
    "terminfo",
    "bash.bashrc",
    "profile",
    "gitconfig",
    "npmrc",
)
"""Entries of the host's ``/etc`` that sandboxes see (where they exist)."""

PASSWD = (
    "root:x:0:0:root:/root:/usr/sbin/nologin\n"
    f"agent:x:{UID}:{UID}:Agentyard agent:{SANDBOX_HOME}:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
)
GROUP = f"root:x:0:\nagent:x:{UID}:\nnogroup:x:65534:\n"

MAX_BYTES = 64 * 1024 * 1024
"""What the copy may take in all; past it, the rest is left out (and a warning logged)."""


class _Budget:
    def __init__(self) -> None:
        self.left = MAX_BYTES
        self.exhausted = False

    def take(self, size: int) -> bool:
        if size > self.left:
            self.exhausted = True
            return False
        self.left -= size
        return True


def make_etc(dest: Path, source: Path = Path("/etc")) -> None:
    """``dest`` (new): the allowed entries of ``source`` that others may read, ``passwd`` and
    ``group``. Symbolic links are copied as links (they resolve inside the sandbox), but for
    an allowed entry that links out of ``/usr`` and ``source``, whose target is copied."""
    dest.mkdir(mode=0o755)
    budget = _Budget()
    for name in ALLOWED:
        _copy(_visible(source / name, source), dest / name, budget)
    (dest / "passwd").write_text(PASSWD)
    (dest / "group").write_text(GROUP)
    if budget.exhausted:
        log.warning("the sandbox's /etc is incomplete", limit_bytes=MAX_BYTES)


def _visible(path: Path, source: Path) -> Path:
    """``path``, or what it links to when that is out of the sandbox's sight (such as
    ``resolv.conf`` pointing into ``/run``): sandboxes see only ``/usr`` and ``/etc``."""
    if not path.is_symlink():
        return path
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return path  # dangling or looping: copied as the link it is
    if any(target == top or top in target.parents for top in (Path("/usr"), source)):
        return path
    return target


def _copy(src: Path, dst: Path, budget: _Budget) -> None:
    try:
        info = os.lstat(src)
    except OSError:
        return  # absent here (or unreadable): left out
    mode = info.st_mode
    try:
        if stat.S_ISLNK(mode):
            os.symlink(os.readlink(src), dst)
        elif stat.S_ISDIR(mode):
            if mode & stat.S_IROTH and mode & stat.S_IXOTH:
                dst.mkdir(mode=0o755)
                for child in sorted(os.listdir(src)):
                    _copy(src / child, dst / child, budget)
        elif stat.S_ISREG(mode) and mode & stat.S_IROTH and budget.take(info.st_size):
            shutil.copyfile(src, dst, follow_symlinks=False)
            os.chmod(dst, 0o755 if mode & stat.S_IXOTH else 0o644)
    except OSError as exc:  # e.g. a file replaced while it was copied
        log.warning("not copied into the sandbox's /etc", path=str(src), error=str(exc))
