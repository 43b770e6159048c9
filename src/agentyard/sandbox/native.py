"""The native model bridge (``bridge.c``): built once with the system's C compiler, cached.

A sandbox's first process is its model bridge. As ``python -I -S bridge.py`` it was most of
a sandbox's start-up (about 20 of 40 ms a run on the project's machine); the same program in
C starts in about one. Where there is no C compiler, or the build fails, the server uses
``bridge.py``: both take the same command line and behave the same.

The binary is cached per source (its SHA-256 in the name) under the user's cache directory,
which must be this user's own and closed to others, since its contents run in every sandbox;
where it is not, the bridge is built into the sandbox's private runtime directory instead.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import uuid
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

SOURCE = Path(__file__).with_name("bridge.c")
_BUILD_SECONDS = 60


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "agentyard"


def find_compiler() -> str | None:
    return shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def build_bridge(scratch: Path, cache: Path | None = None) -> Path | None:
    """The compiled bridge (from the cache, else built now), or None where it cannot be.

    ``scratch`` is a private directory to build in when the cache is not safe to use.
    Blocking: run it in a thread."""
    compiler = find_compiler()
    if compiler is None:
        log.info("no C compiler: sandboxes start the Python model bridge")
        return None
    source = SOURCE.read_bytes()
    name = f"bridge-{hashlib.sha256(source).hexdigest()[:16]}"
    directory = _private_dir(cache if cache is not None else cache_root()) or scratch
    target = directory / name
    if _trusted(target):
        return target
    staging = directory / f".{name}.{uuid.uuid4().hex[:8]}"
    try:
        built = subprocess.run(
            [compiler, "-O2", "-pthread", "-o", str(staging), str(SOURCE)],
            capture_output=True,
            text=True,
            timeout=_BUILD_SECONDS,
            check=False,
        )
        if built.returncode != 0:
            log.warning(
                "the native model bridge did not build: sandboxes start the Python one",
                compiler=compiler,
                error=(built.stderr or built.stdout).strip()[-500:],
            )
            return None
        os.chmod(staging, 0o755)
        os.replace(staging, target)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("the native model bridge did not build", error=str(exc))
        return None
    finally:
        staging.unlink(missing_ok=True)
    return target


def _private_dir(path: Path) -> Path | None:
    """``path``, created if need be, if it and its parent are this user's and closed to
    others (nobody else could swap the binary); else None."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        for directory in (path, path.parent):
            info = directory.lstat()
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
                return None
            if info.st_mode & 0o022:
                return None
    except OSError:
        return None
    return path


def _trusted(binary: Path) -> bool:
    try:
        info = binary.lstat()
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid() and not info.st_mode & 0o022
