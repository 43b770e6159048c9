"""Workspaces without a repository: a new one is the kept spare renamed into place, the next
spare is made in the background, a spare another process took or removed is no loss, and
spares of processes that are gone are removed (the real git CLI throughout)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from agentyard.core.clock import utcnow
from agentyard.core.models import Chat
from agentyard.workspace import workspaces as workspaces_module
from agentyard.workspace.git import Git
from agentyard.workspace.workspaces import SPARE_PREFIX, Workspaces


@pytest.fixture(autouse=True)
def no_spare_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workspaces_module, "_SPARE_DELAY_SECONDS", 0.0)


def chat(chat_id: str) -> Chat:
    return Chat(chat_id=chat_id, user_id="user-1", created_at=utcnow())


def spares(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.name.startswith(SPARE_PREFIX))


async def refilled(workspaces: Workspaces) -> None:
    refill = workspaces._refill
    assert refill is not None
    await refill


def head(path: Path) -> str:
    out = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


async def test_a_new_workspace_is_the_spare_renamed_into_place(tmp_path: Path) -> None:
    root = tmp_path / "workspaces"
    workspaces = Workspaces(root, Git(tmp_path / "state"), tmp_path / "mirrors", [])
    first = await workspaces.prepare(chat("chat-1"), None)  # no spare yet: made here
    await refilled(workspaces)
    [spare] = spares(root)
    assert spare.name.startswith(f"{SPARE_PREFIX}{os.getpid()}-")
    second = await workspaces.prepare(chat("chat-2"), None)
    assert not spare.exists() and second.path == root / "chat-2"
    assert second.base_sha == first.base_sha == head(second.path)
    (second.path / "a.txt").write_text("a\n")  # a workspace of its own, not shared
    assert not (first.path / "a.txt").exists()
    await refilled(workspaces)
    [next_spare] = spares(root)
    assert next_spare != spare
    # Its first run saves into it as into any workspace.
    saved = await workspaces.commit(second.path, "Add a", changed=True, base=second.base_sha)
    stats = await workspaces.stats(second.path, second.base_sha, saved)
    assert stats["commits"] == [saved.head] and stats["files"][0]["path"] == "a.txt"
    await workspaces.close()
    assert spares(root) == []


async def test_a_spare_gone_elsewhere_is_no_loss(tmp_path: Path) -> None:
    root = tmp_path / "workspaces"
    workspaces = Workspaces(root, Git(tmp_path / "state"), tmp_path / "mirrors", [])
    await workspaces.prepare(chat("chat-1"), None)
    await refilled(workspaces)
    [spare] = spares(root)
    shutil.rmtree(spare)  # e.g. another process's sweep
    prepared = await workspaces.prepare(chat("chat-2"), None)
    assert head(prepared.path) == prepared.base_sha
    await workspaces.close()


async def test_spares_of_processes_that_are_gone_are_removed(tmp_path: Path) -> None:
    root = tmp_path / "workspaces"
    root.mkdir()
    gone = await asyncio.create_subprocess_exec("true")
    await gone.wait()
    host = workspaces_module._host()
    stale = [
        root / f"{SPARE_PREFIX}{gone.pid}-dead.{host}",
        root / f"{SPARE_PREFIX}{os.getpid()}-old.{host}",
    ]
    live = root / f"{SPARE_PREFIX}1-other.{host}"  # pid 1 is alive: another server's spare
    elsewhere = root / f"{SPARE_PREFIX}{gone.pid}-theirs.0another"  # another machine's
    for path in (*stale, live, elsewhere):
        (path / ".git").mkdir(parents=True)
    workspaces = Workspaces(root, Git(tmp_path / "state"), tmp_path / "mirrors", [])
    await workspaces.prepare(chat("chat-1"), None)
    await refilled(workspaces)
    left = spares(root)
    assert live in left and elsewhere in left and len(left) == 3
    assert not any(path in left for path in stale)
    await workspaces.close()
    assert spares(root) == sorted([live, elsewhere])


async def test_close_stops_a_spare_being_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "workspaces"
    workspaces = Workspaces(root, Git(tmp_path / "state"), tmp_path / "mirrors", [])
    await workspaces.prepare(chat("chat-1"), None)
    await refilled(workspaces)
    monkeypatch.setattr(workspaces_module, "_SPARE_DELAY_SECONDS", 30.0)
    await workspaces.prepare(chat("chat-2"), None)  # took the spare; the next one waits
    await asyncio.sleep(0)
    assert spares(root) == [] and workspaces._refill is not None
    await workspaces.close()
    assert spares(root) == [] and workspaces._refill is None
    without = Workspaces(
        tmp_path / "w2", Git(tmp_path / "s2"), tmp_path / "m2", [], keep_spare=False
    )
    await without.prepare(chat("chat-3"), None)
    assert without._refill is None and spares(tmp_path / "w2") == []
