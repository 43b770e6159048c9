"""Verified API keys, remembered for a few seconds: a request need not query the key table.

Only live keys are remembered (an unknown secret is looked up every time, so a key created
by another process works at once). A revocation through this process's Store forgets
every remembered key at once; one made elsewhere on the same data directory (``agentyard
keys revoke``, another server) replaces a stamp file, which every lookup checks with one
``stat``; one made where neither reaches (another host on the same PostgreSQL) takes effect
within ``ttl`` seconds, the bound this cache adds.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

STAMP_NAME = "keys-revoked"
"""In the data directory: replaced (a new inode) by every revocation."""

_MAX_ENTRIES = 10_000


def mark_revoked(data_dir: Path) -> None:
    """Tell every process on ``data_dir`` that a key was revoked (atomic replace)."""
    stamp = data_dir / STAMP_NAME
    tmp = stamp.with_name(f".{STAMP_NAME}.{os.getpid()}.{time.monotonic_ns()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    os.replace(tmp, stamp)


class VerifiedKeys:
    def __init__(
        self,
        ttl: float,
        data_dir: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self._stamp_path = None if data_dir is None else data_dir / STAMP_NAME
        self._clock = clock
        self._stamp = self._read_stamp()
        self._by_hash: dict[str, tuple[str, str, float]] = {}
        self._by_id: dict[str, tuple[str, float]] = {}
        self.generation = 0
        """Counts forgettings: a lookup begun before one must not remember its answer (the
        key may have been revoked while it was reading)."""

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    def _read_stamp(self) -> tuple[int, int] | None:
        if self._stamp_path is None:
            return None
        try:
            st = os.stat(self._stamp_path)
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns

    def _fresh(self) -> None:
        """Forget everything when another process has revoked a key since the last look."""
        stamp = self._read_stamp()
        if stamp != self._stamp:
            self._stamp = stamp
            self.forget()

    def by_hash(self, key_hash: str) -> tuple[str, str] | None:
        """(key id, user id) of a live key verified less than ``ttl`` seconds ago."""
        self._fresh()
        if not self.enabled:
            return None
        found = self._by_hash.get(key_hash)
        if found is None or self._clock() - found[2] >= self.ttl:
            return None
        return found[0], found[1]

    def by_id(self, key_id: str) -> str | None:
        """The user of a live key id verified less than ``ttl`` seconds ago."""
        self._fresh()
        if not self.enabled:
            return None
        found = self._by_id.get(key_id)
        if found is None or self._clock() - found[1] >= self.ttl:
            return None
        return found[0]

    def remember(self, generation: int, key_hash: str | None, key_id: str, user_id: str) -> None:
        """Note a live key read by a lookup begun at ``generation``."""
        if not self.enabled or generation != self.generation:
            return
        if len(self._by_hash) + len(self._by_id) >= _MAX_ENTRIES:
            self.forget()
        now = self._clock()
        if key_hash is not None:
            self._by_hash[key_hash] = (key_id, user_id, now)
        self._by_id[key_id] = (user_id, now)

    def forget(self) -> None:
        self.generation += 1
        self._by_hash.clear()
        self._by_id.clear()

    def revoked(self) -> None:
        """A key was revoked here: forget at once, and tell the other processes."""
        self.forget()
        if self._stamp_path is not None:
            with contextlib.suppress(OSError):
                mark_revoked(self._stamp_path.parent)
            self._stamp = self._read_stamp()
