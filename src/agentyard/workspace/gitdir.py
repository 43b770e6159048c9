"""What a workspace's git directory may hold before the server's own git runs in it.

An agent works in the workspace, so its ``.git`` is not trusted: the server's git runs there
only on a plain directory with no symlink in it and no redirect out of it, after the files
that would make git read something elsewhere are dropped and its config is rewritten to keep
only harmless keys (:meth:`agentyard.workspace.git.Git` does that before every command), or,
for diffs, on a throwaway repository of the server's own that reads nothing of the
workspace but its objects (:func:`object_store`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

from agentyard.workspace.git_process import GitError

# The workspace config keys kept before the server runs git there; everything else (url
# rewrites, proxies, credential helpers, fsmonitor, filters, diff drivers, includes,
# core.worktree, pagers, editors, gpg, ...) is dropped. (core.bare is dropped too: a
# workspace always has a work tree.)
SAFE_CONFIG = re.compile(
    r"^(core\.(repositoryformatversion|filemode|logallrefupdates|ignorecase"
    r"|precomposeunicode|symlinks)"
    r"|extensions\.objectformat"
    r"|branch\..+\.(remote|merge)"
    r"|user\.(name|email))$",
    re.IGNORECASE,
)
# Kept as they are when the call names no URL (local operations): where origin is.
ORIGIN_CONFIG = re.compile(r"^remote\.origin\.(url|fetch)$", re.IGNORECASE)

# Files of a workspace's git directory that make git read something outside it (other
# object stores), or carry configuration-like data (attributes, grafts, per-worktree
# config): removed before the server's git runs there.
_DROPPED_GIT_FILES = (
    "objects/info/alternates",
    "objects/info/http-alternates",
    "info/attributes",
    "info/grafts",
    "config.worktree",
)


def checked_git_dir(dest: Path, *, objects_only: bool) -> Path:
    """``dest/.git`` if it is a plain directory (not a symlink, not a ``gitdir:`` file)
    without a ``commondir`` redirect and holding only directories and regular files (no
    symlink, FIFO or socket anywhere in it), so git reads and writes nothing outside it and
    never waits on a pipe; GitError if not. With ``objects_only`` only the object store is
    searched (all that a diff in :func:`object_store` reads)."""
    gitdir = dest / ".git"
    try:
        mode = gitdir.lstat().st_mode
    except FileNotFoundError:
        raise GitError(f"{dest} is not a workspace: it has no .git") from None
    if not stat.S_ISDIR(mode):
        raise GitError(f"{dest} is not a workspace: .git is not a directory")
    if os.path.lexists(gitdir / "commondir"):
        raise GitError(f"{dest} is not a workspace: .git/commondir redirects its config")
    top = gitdir / "objects" if objects_only else gitdir
    if top.is_symlink():
        raise GitError(f"{dest} is not a workspace: {top.relative_to(dest)} is a symlink")
    pending = [top]
    while pending:
        current = pending.pop()
        try:
            children = list(os.scandir(current))
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise GitError(f"{dest} is not a workspace: {exc}") from None
        for child in children:
            if child.is_dir(follow_symlinks=False):
                pending.append(Path(child.path))
            elif not child.is_file(follow_symlinks=False):
                # A symlink leads elsewhere; a FIFO (an agent's mkfifo .git/index) would hold
                # the server's git until its timeout; a socket or device is no git file.
                where = Path(child.path).relative_to(dest).as_posix()
                what = "a symlink" if child.is_symlink() else "not a regular file"
                raise GitError(f"{dest} is not a workspace: {where} is {what}")
    return gitdir


_OID = re.compile(rb"[0-9a-f]{40}|[0-9a-f]{64}")
_BRANCH_REF = re.compile(rb"ref: (refs/heads/[A-Za-z0-9._/-]{1,200})")


def committed_head(gitdir: Path) -> str | None:
    """The commit HEAD names right after the server's own ``git commit`` in a git directory
    :func:`checked_git_dir` passed (no symlink in it, the agent's processes gone): read
    from ``HEAD`` and the branch's loose ref, which a commit always writes. None for
    anything but exactly that (another ref store, an odd name): ask git then."""
    try:
        head = _read_plain(gitdir / "HEAD").strip()
        if _OID.fullmatch(head):
            return head.decode()  # detached
        branch = _BRANCH_REF.fullmatch(head)
        parts = branch.group(1).split(b"/") if branch is not None else [b""]
        if any(not part or part.startswith(b".") for part in parts):
            return None  # a name git refuses: never a path out of refs/heads
        oid = _read_plain(gitdir.joinpath(*map(os.fsdecode, parts))).strip()
    except OSError:
        return None
    return oid.decode() if _OID.fullmatch(oid) else None


def _read_plain(path: Path) -> bytes:
    """A regular file's first bytes, never through a symlink."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        return os.read(fd, 512)
    finally:
        os.close(fd)


def drop_git_files(gitdir: Path) -> list[Path]:
    """Remove the files that make git read elsewhere; those that are directories (an
    agent's doing, of any size) are returned for the caller to remove off the loop."""
    directories = []
    for name in _DROPPED_GIT_FILES:
        path = gitdir / name
        if path.is_dir() and not path.is_symlink():
            directories.append(path)
        else:
            path.unlink(missing_ok=True)
    return directories


def config_text(entries: list[tuple[str, str]]) -> str:
    """A git config file holding ``entries`` (``section[.subsection].name``, value)."""
    sections: dict[tuple[str, str | None], list[tuple[str, str]]] = {}
    for key, value in entries:
        section, _, rest = key.partition(".")
        middle, _, name = rest.rpartition(".")
        sections.setdefault((section, middle or None), []).append((name, value))
    lines: list[str] = []
    for (section, subsection), items in sections.items():
        if subsection is None:
            lines.append(f"[{section}]")
        else:
            escaped = subsection.replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'[{section} "{escaped}"]')
        for name, value in items:
            quoted = (
                value.replace("\\", "\\\\")
                .replace('"', '\\"')
                .replace("\n", "\\n")
                .replace("\t", "\\t")
            )
            lines.append(f'\t{name} = "{quoted}"')
    return "\n".join(lines) + "\n"


async def object_store(dest: Path, oid: str, state_dir: Path) -> tuple[Path, dict[str, str]]:
    """A bare repository of the server's own whose object store is the workspace's: (its
    path, the environment to run git in it). Nothing of the workspace but its objects is
    read (no config, attributes, refs or hooks), and nothing there is written. GitError if
    the workspace's objects lead outside it (a symlink, alternates).

    The repository is empty but for its config (the object store comes from the
    environment) and only ever read, so one per object format serves every diff: made
    once in the server's private state directory, not per call."""
    gitdir = await asyncio.to_thread(checked_git_dir, dest, objects_only=True)
    objects = gitdir / "objects"
    if (objects / "info" / "alternates").exists():
        raise GitError(f"{dest} is not a workspace: its objects have alternates")
    shadow = await shadow_repo(state_dir, oid)
    return shadow, shadow_env(shadow, gitdir)


def shadow_env(shadow: Path, gitdir: Path) -> dict[str, str]:
    """The environment that runs git in ``shadow`` on the object store of ``gitdir``."""
    return {"GIT_DIR": str(shadow), "GIT_OBJECT_DIRECTORY": str(gitdir / "objects")}


async def shadow_repo(state_dir: Path, oid: str) -> Path:
    """The server's throwaway repository (see :func:`object_store`) for ``oid``'s object
    format; made the first time (in a thread), else found with one stat."""
    object_format = "sha256" if len(oid) == 64 else "sha1"
    shadow = state_dir / f"objects-{object_format}.git"
    if (shadow / "config").is_file():
        return shadow
    return await asyncio.to_thread(_shadow, state_dir, object_format)


def _shadow(state_dir: Path, object_format: str) -> Path:
    """The state directory's throwaway repository for ``object_format``, made (aside, then
    renamed into place: another process may win the rename) if it is not there yet."""
    shadow = state_dir / f"objects-{object_format}.git"
    if (shadow / "config").is_file():
        return shadow
    staging = Path(tempfile.mkdtemp(".git", "objects-", state_dir))
    try:
        (staging / "refs").mkdir()
        (staging / "HEAD").write_text("ref: refs/heads/main\n")
        entries = [("core.bare", "true"), ("core.commitgraph", "false")]
        if object_format == "sha256":
            entries += [("core.repositoryformatversion", "1"),
                        ("extensions.objectformat", "sha256")]  # fmt: skip
        else:
            entries.append(("core.repositoryformatversion", "0"))
        (staging / "config").write_text(config_text(entries))
        with contextlib.suppress(OSError):  # lost the race: the winner's is the same
            staging.rename(shadow)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return shadow
