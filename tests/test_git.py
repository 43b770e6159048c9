"""Git through the real CLI against a real smart-HTTP git server on 127.0.0.1: mirrors,
workspaces, branches, commits, pushes, follow-ups, diffs, and where the token may (only the
environment of network commands) and may not (argv, URLs, config, errors) appear."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from agentyard.core.repo_rules import branch_name
from agentyard.testing.git_http import GitHttpServer
from agentyard.workspace.git import DiffStats, FileStat, Git, GitError, Saved
from agentyard.workspace.gitdir import committed_head

TOKEN = "ghp_gitTestToken_5up3rS3cr3t_0123456789"
RUN_ID = "3f2b8c1d-9e4a-4b7c-8d6e-0a1b2c3d4e5f"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[GitHttpServer]:
    with GitHttpServer(tmp_path / "remote", TOKEN) as srv:
        yield srv


@pytest.fixture
def argv_log(tmp_path: Path) -> Path:
    return tmp_path / "git-argv.log"


@pytest.fixture
def git(tmp_path: Path, argv_log: Path) -> Git:
    """A Git whose git binary is a shim logging each call's argv, and whether the token was
    in its environment, before running the real git."""
    real = shutil.which("git")
    assert real
    shim = tmp_path / "bin" / "git"
    shim.parent.mkdir()
    shim.write_text(
        "#!/bin/sh\n"
        f"printf 'token=%s argv=%s\\n' \"${{AGENTYARD_GIT_TOKEN:+set}}\" \"$*\" >> '{argv_log}'\n"
        f"exec '{real}' \"$@\"\n"
    )
    shim.chmod(0o755)
    return Git(
        tmp_path / "state",
        timeout=20,
        author_name="Agentyard Bot",
        author_email="bot@example.test",
        allow_http=True,
        git=str(shim),
    )


@pytest.fixture
def url(server: GitHttpServer) -> str:
    return server.create_repo("demo", {"README.md": "hello\n", "src/app.py": "print(1)\n"})


def sh(cwd: Path, *args: str) -> str:
    """Inspect a repository with plain git (not the code under test)."""
    env = {"PATH": os.environ["PATH"], "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"}
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()


async def first_run(git: Git, url: str, tmp_path: Path, name: str = "ws1") -> tuple[Path, str]:
    """Mirror, checkout, branch, commit and push one change; the workspace and branch."""
    mirror = await git.ensure_mirror(url, TOKEN, tmp_path / "cache")
    dest = tmp_path / name
    await git.checkout_workspace(url, mirror, dest, "main")
    branch = branch_name("Add a feature", RUN_ID)
    await git.create_branch(dest, branch)
    (dest / "feature.txt").write_text("feature\n")
    assert await git.commit_all(dest, "Add feature")
    await git.push(url, TOKEN, dest, branch)
    return dest, branch


async def test_mirror_checkout_branch_commit_push(
    git: Git, server: GitHttpServer, url: str, tmp_path: Path
) -> None:
    """A task's first run: the remote's default branch is found, the repository mirrored
    and checked out with origin set to the real URL, a branch created, the change committed
    as the configured author and pushed, so the branch exists on the remote with the file."""
    assert await git.remote_default_branch(url, TOKEN) == "main"
    mirror = await git.ensure_mirror(url, TOKEN, tmp_path / "cache")
    assert mirror.parent == tmp_path / "cache" and (mirror / "HEAD").exists()
    dest = tmp_path / "ws"
    base = await git.checkout_workspace(url, mirror, dest, "main")
    assert base == server.branches("demo")["main"]
    assert sh(dest, "remote", "get-url", "origin") == url
    assert (dest / "src" / "app.py").read_text() == "print(1)\n"
    # Objects were copied (hard links): the workspace does not depend on the mirror.
    assert not (dest / ".git" / "objects" / "info" / "alternates").exists()

    branch = branch_name("Add a feature", RUN_ID)
    await git.create_branch(dest, branch)
    (dest / "feature.txt").write_text("feature\n")
    (dest / "README.md").unlink()
    sha = await git.commit_all(dest, "Add feature")
    assert sha and sha == sh(dest, "rev-parse", "HEAD")
    assert sh(dest, "log", "-1", "--format=%an <%ae> / %cn <%ce>") == (
        "Agentyard Bot <bot@example.test> / Agentyard Bot <bot@example.test>"
    )
    await git.push(url, TOKEN, dest, branch)

    assert server.branches("demo")[branch] == sha
    assert server.read_file("demo", branch, "feature.txt") == "feature\n"
    assert server.read_file("demo", branch, "README.md") is None
    assert server.log("demo", branch) == ["Add feature", "Initial commit"]
    assert server.branches("demo")["main"] == base
    assert sh(dest, "rev-parse", f"refs/remotes/origin/{branch}") == sha


async def test_second_checkout_reuses_the_mirror(
    git: Git, server: GitHttpServer, url: str, tmp_path: Path
) -> None:
    """A second ensure_mirror fetches into the same mirror (no new clone) and picks up new
    commits; workspaces cloned from it see them."""
    cache = tmp_path / "cache"
    mirror = await git.ensure_mirror(url, TOKEN, cache)
    inode = mirror.stat().st_ino
    (mirror / "agentyard-marker").write_text("still here")
    new = server.add_commit("demo", "main", {"NEWS.md": "news\n"}, "Add news")
    server.add_commit("demo", "release", {"v.txt": "1\n"}, "Release branch")

    again = await git.ensure_mirror(url, TOKEN, cache)
    assert again == mirror and again.stat().st_ino == inode
    assert (again / "agentyard-marker").read_text() == "still here"
    assert sh(mirror, "rev-parse", "refs/heads/main") == new
    assert sh(mirror, "rev-parse", "refs/heads/release")
    assert sorted(p.name for p in cache.iterdir() if p.is_dir()) == [mirror.name]

    dest = tmp_path / "ws"
    assert await git.checkout_workspace(url, mirror, dest, "main") == new
    assert (dest / "NEWS.md").read_text() == "news\n"


async def test_mirror_prunes_deleted_branches(
    git: Git, server: GitHttpServer, url: str, tmp_path: Path
) -> None:
    """Branches deleted on the remote disappear from the mirror on the next update."""
    server.add_commit("demo", "temp", {"t.txt": "t\n"})
    mirror = await git.ensure_mirror(url, TOKEN, tmp_path / "cache")
    assert "temp" in sh(mirror, "branch", "--list")
    sh(server.repo_path("demo"), "branch", "-D", "temp")
    await git.ensure_mirror(url, TOKEN, tmp_path / "cache")
    assert "temp" not in sh(mirror, "branch", "--list")


async def test_concurrent_mirror_calls_share_one_mirror(git: Git, url: str, tmp_path: Path) -> None:
    """Concurrent ensure_mirror calls for one repository serialise on its lock: one sound
    mirror, no leftover staging directories."""
    cache = tmp_path / "cache"
    mirrors = await asyncio.gather(*(git.ensure_mirror(url, TOKEN, cache) for _ in range(4)))
    assert len(set(mirrors)) == 1
    sh(mirrors[0], "fsck", "--no-progress")
    assert [p.name for p in cache.iterdir() if p.is_dir()] == [mirrors[0].name]


async def test_follow_up_continues_on_the_pushed_branch(
    git: Git, server: GitHttpServer, url: str, tmp_path: Path
) -> None:
    """A follow-up run in a new workspace fetches the pushed branch, checks it out at the
    remote's tip, adds a commit and pushes it; fetching again fast-forwards to commits
    others pushed meanwhile."""
    _, branch = await first_run(git, url, tmp_path)
    first = server.branches("demo")[branch]

    mirror = await git.ensure_mirror(url, TOKEN, tmp_path / "cache")
    dest = tmp_path / "ws2"
    await git.checkout_workspace(url, mirror, dest, "main")
    assert await git.fetch_branch(url, TOKEN, dest, branch) == first
    assert sh(dest, "branch", "--show-current") == branch
    assert (dest / "feature.txt").read_text() == "feature\n"
    (dest / "feature.txt").write_text("feature, improved\n")
    second = await git.commit_all(dest, "Improve feature")
    await git.push(url, TOKEN, dest, branch)
    assert server.branches("demo")[branch] == second
    assert server.log("demo", branch) == ["Improve feature", "Add feature", "Initial commit"]

    reviewed = server.add_commit("demo", branch, {"review.txt": "lgtm\n"}, "Review")
    assert await git.fetch_branch(url, TOKEN, dest, branch) == reviewed
    assert (dest / "review.txt").read_text() == "lgtm\n"

    # The mirror has the branch too: a workspace can start on it directly.
    mirror = await git.ensure_mirror(url, TOKEN, tmp_path / "cache")
    assert await git.checkout_workspace(url, mirror, tmp_path / "ws3", branch) == reviewed


async def test_rejected_push_keeps_the_work(
    git: Git, server: GitHttpServer, url: str, tmp_path: Path
) -> None:
    """A push refused by the remote raises GitError carrying the hook's message; the
    workspace and its commit are intact and the push succeeds once allowed."""
    mirror = await git.ensure_mirror(url, TOKEN, tmp_path / "cache")
    dest = tmp_path / "ws"
    await git.checkout_workspace(url, mirror, dest, "main")
    branch = branch_name("frozen", RUN_ID)
    await git.create_branch(dest, branch)
    (dest / "work.txt").write_text("precious\n")
    sha = await git.commit_all(dest, "Precious work")
    server.reject_pushes("demo", message="pushes are frozen: code freeze until Monday")

    with pytest.raises(GitError) as info:
        await git.push(url, TOKEN, dest, branch)
    assert "code freeze until Monday" in str(info.value) and info.value.command == "push"
    assert branch not in server.branches("demo")
    assert sh(dest, "rev-parse", "HEAD") == sha and (dest / "work.txt").exists()
    assert sh(dest, "status", "--porcelain") == ""

    server.reject_pushes("demo", False)
    await git.push(url, TOKEN, dest, branch)
    assert server.branches("demo")[branch] == sha


async def test_non_fast_forward_push_is_refused(
    git: Git, server: GitHttpServer, url: str, tmp_path: Path
) -> None:
    """A push never forces: if the remote branch moved on, GitError says it was rejected."""
    dest, branch = await first_run(git, url, tmp_path)
    server.add_commit("demo", branch, {"other.txt": "x\n"}, "Someone else")
    (dest / "mine.txt").write_text("mine\n")
    await git.commit_all(dest, "Mine")
    with pytest.raises(GitError, match="rejected"):
        await git.push(url, TOKEN, dest, branch)
    assert server.log("demo", branch)[0] == "Someone else"


async def test_nothing_to_commit(git: Git, url: str, tmp_path: Path) -> None:
    """commit_all returns None when nothing changed, and commits deletions and new files
    otherwise."""
    mirror = await git.ensure_mirror(url, TOKEN, tmp_path / "cache")
    dest = tmp_path / "ws"
    base = await git.checkout_workspace(url, mirror, dest, "main")
    assert await git.commit_all(dest, "Nothing") is None
    assert sh(dest, "rev-parse", "HEAD") == base
    (dest / "README.md").unlink()
    assert await git.commit_all(dest, "Remove readme") not in (None, base)


async def test_staged_changes_the_work_tree_undid_are_nothing_to_commit(
    git: Git, tmp_path: Path
) -> None:
    """The agent staged a change and then put the file back (the index differs from HEAD,
    the work tree does not): nothing to commit. A staged rename is committed as one, also
    when its original path looks like another status record."""
    dest = tmp_path / "ws"
    await git.init_workspace(dest)
    (dest / "a.txt").write_text("a\n")
    (dest / "1 .M b.txt").write_text("b\n")
    first = await git.commit_all(dest, "First")
    (dest / "a.txt").write_text("changed\n")
    sh(dest, "add", "a.txt")
    (dest / "a.txt").write_text("a\n")
    assert await git.commit_all(dest, "Nothing") is None
    assert sh(dest, "rev-parse", "HEAD") == first
    sh(dest, "mv", "1 .M b.txt", "c.txt")
    renamed = await git.commit_all(dest, "Renamed")
    assert renamed not in (None, first)
    assert sh(dest, "ls-tree", "--name-only", "HEAD").split("\n") == ["a.txt", "c.txt"]


async def test_wrong_token_fails_without_leaking_it(
    git: Git, server: GitHttpServer, url: str, tmp_path: Path
) -> None:
    """A wrong token is a GitError whose message holds no token; the failed clone leaves no
    mirror behind; a failed push leaves the workspace as it was."""
    wrong = "ghp_wrongToken_AAAAbbbbCCCCdddd"
    cache = tmp_path / "cache"
    with pytest.raises(GitError) as info:
        await git.ensure_mirror(url, wrong, cache)
    assert "Authentication failed" in str(info.value) and info.value.command == "clone"
    assert wrong not in str(info.value) and TOKEN not in str(info.value)
    assert list(cache.iterdir()) == [] or all(p.suffix == ".lock" for p in cache.iterdir())
    with pytest.raises(GitError) as info:
        await git.remote_default_branch(url, wrong)
    assert wrong not in str(info.value)
    with pytest.raises(GitError):
        await git.remote_default_branch(url, None)  # no token at all: still a clean error

    dest, branch = await first_run(git, url, tmp_path)
    (dest / "more.txt").write_text("more\n")
    sha = await git.commit_all(dest, "More")
    with pytest.raises(GitError) as info:
        await git.push(url, wrong, dest, branch)
    assert wrong not in str(info.value) and sh(dest, "rev-parse", "HEAD") == sha


async def test_token_appears_only_in_the_environment(
    git: Git, server: GitHttpServer, url: str, tmp_path: Path, argv_log: Path
) -> None:
    """After a full run and a follow-up, the token is in no git argv, no file of the mirror,
    the workspaces or git's state directory, and no URL the server saw; it was in the
    environment of network commands only."""
    dest, branch = await first_run(git, url, tmp_path)
    await git.fetch_branch(url, TOKEN, dest, branch)
    await git.diff_stats(dest, "main")

    log = argv_log.read_text()
    assert TOKEN not in log
    seen: dict[str, set[bool]] = {}
    for line in log.splitlines():
        flag, _, argv = line.partition(" argv=")
        words = argv.split()
        while words and words[0] == "-c":
            words = words[2:]
        command = words[0]
        if command == "clone":  # from the URL (the mirror) or from the mirror (a workspace)
            command = "clone-remote" if "--bare" in words else "clone-local"
        seen.setdefault(command, set()).add(flag == "token=set")
    network = {"ls-remote", "clone-remote", "fetch", "push"}
    assert {c for c, flags in seen.items() if True in flags} == network - {"ls-remote"}
    assert all(flags == {True} for c, flags in seen.items() if c in network and c in seen)
    assert {"clone-local", "add", "commit", "diff", "rev-parse", "config"} <= set(seen)
    assert all(flags == {False} for c, flags in seen.items() if c not in network)

    needle = TOKEN.encode()
    for place in (tmp_path / "cache", dest, tmp_path / "state"):
        for path in place.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert needle not in path.read_bytes(), path
    assert all(TOKEN not in r.path and TOKEN not in r.query for r in server.requests)
    assert any(r.status == 401 for r in server.requests)  # git was challenged, then answered


async def test_token_echoed_by_the_remote_is_scrubbed(
    git: Git, server: GitHttpServer, url: str, tmp_path: Path
) -> None:
    """Even when the remote echoes the token back (here from its hook), the GitError
    message has it replaced by ***."""
    dest, branch = await first_run(git, url, tmp_path)
    (dest / "x.txt").write_text("x\n")
    await git.commit_all(dest, "x")
    server.reject_pushes("demo", message=f"your token is {TOKEN}")
    with pytest.raises(GitError) as info:
        await git.push(url, TOKEN, dest, branch)
    assert TOKEN not in str(info.value) and "your token is ***" in str(info.value)
    assert TOKEN not in info.value.stderr


def test_askpass_answers_only_for_the_calls_host(git: Git) -> None:
    """The askpass script gives the username to anyone, but the token only when git's
    prompt names the host the call was made for (a redirect elsewhere gets nothing)."""
    env = {"PATH": os.environ["PATH"], "AGENTYARD_GIT_TOKEN": TOKEN, "AGENTYARD_GIT_HOST": "h:1"}

    def ask(prompt: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(git.askpass), prompt], env=env, capture_output=True, text=True, timeout=10
        )

    assert ask("Username for 'https://h:1': ").stdout == "x-access-token\n"
    assert ask("Password for 'https://x-access-token@h:1': ").stdout == f"{TOKEN}\n"
    other = ask("Password for 'https://x-access-token@evil.example': ")
    assert other.returncode != 0 and TOKEN not in other.stdout
    assert ask("Password for 'https://x-access-token@h:12': ").returncode != 0
    assert oct(git.askpass.stat().st_mode & 0o777) == "0o700"
    assert TOKEN not in git.askpass.read_text()


async def test_an_agent_cannot_redirect_the_push_or_run_code_with_the_token(
    git: Git, server: GitHttpServer, url: str, tmp_path: Path
) -> None:
    """An agent that rewrites the workspace's .git/config (origin, url rewrites, credential
    helper, fsmonitor) or adds hooks gains nothing: fetch and push go to the real URL, none
    of its commands run, and the hostile keys are gone afterwards."""
    dest, branch = await first_run(git, url, tmp_path)
    pwned = tmp_path / "pwned"
    for key, value in (
        ("remote.origin.url", "http://127.0.0.1:1/evil.git"),
        ("url.http://127.0.0.1:1/.insteadOf", url),
        ("credential.helper", f"!touch {pwned}-helper; echo"),
        ("core.fsmonitor", f"touch {pwned}-fsmonitor; true"),
        ("core.sshCommand", f"touch {pwned}-ssh"),
        ("include.path", str(tmp_path / "evil.config")),
    ):
        sh(dest, "config", key, value)
    hook = dest / ".git" / "hooks" / "pre-push"
    hook.write_text(f'#!/bin/sh\nenv > "{pwned}-hook"\n')
    hook.chmod(0o755)

    (dest / "y.txt").write_text("y\n")
    sha = await git.commit_all(dest, "y")
    await git.push(url, TOKEN, dest, branch)
    assert server.branches("demo")[branch] == sha
    assert await git.fetch_branch(url, TOKEN, dest, branch) == sha
    assert not list(tmp_path.glob("pwned*"))
    config = (dest / ".git" / "config").read_text()
    for gone in ("evil", "insteadOf", "helper", "fsmonitor", "sshCommand", "include"):
        assert gone not in config
    assert sh(dest, "remote", "get-url", "origin") == url


async def test_dangerous_urls_never_reach_the_network(git: Git, tmp_path: Path) -> None:
    """ext::, file://, credentials in the URL, and http when not allowed are refused before
    git runs (and git itself would refuse those transports)."""
    marker = tmp_path / "pwned"
    strict = Git(tmp_path / "strict-state", timeout=10)
    for bad in (
        f"ext::sh -c touch% {marker}",
        f"file://{tmp_path}",
        str(tmp_path),
        "https://user:secret@github.com/o/r.git",
        "ssh://git@github.com/o/r.git",
    ):
        with pytest.raises(GitError) as info:
            await git.remote_default_branch(bad, TOKEN)
        assert "secret" not in str(info.value)
    with pytest.raises(GitError, match="must be https"):
        await strict.ensure_mirror("http://127.0.0.1:1/x.git", TOKEN, tmp_path / "cache")
    assert not marker.exists()


async def test_branch_names_are_checked_before_use(git: Git, tmp_path: Path) -> None:
    """A branch name git would reject, or that could pass for an option, is a GitError
    before any git command sees it."""
    dest = tmp_path / "ws"
    await git.init_workspace(dest)
    for bad in ("-b", "--force", "a..b", "x.lock", "a b", "a~1", "refs/heads/../x", "@", ""):
        with pytest.raises(GitError, match="invalid branch name"):
            await git.create_branch(dest, bad)
    await git.create_branch(dest, "agentyard/ok-12345678")
    assert sh(dest, "branch", "--show-current") == "agentyard/ok-12345678"


async def test_init_workspace(git: Git, tmp_path: Path) -> None:
    """A repository-less task gets a fresh repository on main with one empty commit; a
    non-empty destination is refused."""
    dest = tmp_path / "fresh"
    sha = await git.init_workspace(dest)
    assert sh(dest, "rev-parse", "HEAD") == sha
    assert sh(dest, "branch", "--show-current") == "main"
    assert sh(dest, "log", "--format=%s") == "Workspace created"
    assert sh(dest, "ls-files") == ""
    with pytest.raises(GitError, match="not empty"):
        await git.init_workspace(dest)


async def test_new_workspaces_are_independent_copies(git: Git, tmp_path: Path) -> None:
    """Workspaces made from the server's template share only their first commit: work in
    one is not in the other, a config an agent plants in one is dropped there and never
    reaches the template or the next workspace."""
    first, second = tmp_path / "one", tmp_path / "two"
    base = await git.init_workspace(first)
    (first / "a.txt").write_text("a\n")
    sh(first, "config", "core.fsmonitor", _evil(tmp_path, "fsmonitor"))
    head = await git.commit_all(first, "Add a")
    assert head and head != base
    assert "fsmonitor" not in (first / ".git" / "config").read_text()
    assert await git.init_workspace(second) == base
    assert sh(second, "rev-parse", "HEAD") == base and not (second / "a.txt").exists()
    assert "fsmonitor" not in (second / ".git" / "config").read_text()
    sh(first, "config", "core.fsmonitor", _evil(tmp_path, "fsmonitor-again"))
    assert await git.commit_all(first, "Nothing") is None
    assert "fsmonitor" not in (first / ".git" / "config").read_text()
    sh(second, "fsck", "--strict")
    assert sorted(p.name for p in tmp_path.glob("pwned*")) == []


async def test_a_save_says_what_it_did(git: Git, tmp_path: Path, argv_log: Path) -> None:
    """save: the head after and before, whether it committed (in three git processes for
    a changed tree); its own single commit on base is all base..head holds, and the stats
    it knows equal those git lists, also when the agent committed itself first (then git
    lists both commits)."""
    dest = tmp_path / "ws"
    base = await git.init_workspace(dest)
    assert await git.save(dest, "Nothing") == Saved(base, False, base)
    (dest / "a.txt").write_text("a\n")
    calls = len(argv_log.read_text().splitlines())
    saved = await git.save(dest, "Add a")
    assert len(argv_log.read_text().splitlines()) - calls == 3
    assert saved.committed and saved.before == base and saved.head == sh(dest, "rev-parse", "HEAD")
    assert saved.only_commit_on(base) and not saved.only_commit_on(saved.head)
    known = await git.diff_stats(dest, base, saved.head, [saved.head])
    assert known == await git.diff_stats(dest, base, saved.head)
    # The agent's own commit, then more work: two commits, which git lists.
    (dest / "b.txt").write_text("b\n")
    sh(dest, "add", "b.txt")
    sh(dest, "-c", "user.name=a", "-c", "user.email=a@x", "commit", "-qm", "Agent's own")
    agents = sh(dest, "rev-parse", "HEAD")
    (dest / "c.txt").write_text("c\n")
    second = await git.save(dest, "Add c")
    assert second.before == agents and not second.only_commit_on(saved.head)
    stats = await git.diff_stats(dest, saved.head, second.head)
    assert stats.commits == [agents, second.head]
    assert [f.path for f in stats.files] == ["b.txt", "c.txt"]


async def test_a_save_told_the_tree_changed_skips_the_status(
    git: Git, tmp_path: Path, argv_log: Path
) -> None:
    """``changed=True`` (the agent reported writing a file): two git processes, the same
    record as without the hint; when the agent undid its writes, nothing is committed and
    the head is as it was; a commit that fails for another reason is an error."""
    dest = tmp_path / "ws"
    base = await git.init_workspace(dest)
    (dest / "a.txt").write_text("a\n")
    calls = len(argv_log.read_text().splitlines())
    saved = await git.save(dest, "Add a", changed=True)
    assert len(argv_log.read_text().splitlines()) - calls == 2
    assert saved == Saved(sh(dest, "rev-parse", "HEAD"), True, base)
    assert sh(dest, "show", "--format=%s", "--name-only", "HEAD").split() == ["Add", "a", "a.txt"]
    # Written and removed again: nothing to commit.
    (dest / "b.txt").write_text("b\n")
    (dest / "b.txt").unlink()
    assert await git.save(dest, "Nothing", changed=True) == Saved(saved.head, False, saved.head)
    assert sh(dest, "rev-parse", "HEAD") == saved.head
    # The branch's ref locked: the add goes through, the commit fails and says so.
    (dest / "c.txt").write_text("c\n")
    (dest / ".git" / "refs" / "heads" / "main.lock").write_text("")
    with pytest.raises(GitError, match="git commit failed"):
        await git.save(dest, "Locked", changed=True)


async def test_a_save_given_its_base_lists_the_files_beside_the_commit(
    git: Git, tmp_path: Path, argv_log: Path
) -> None:
    """save(base=...): one more git process, run while git commits, whose files are those
    git lists for base..head afterwards (binary, deleted, in subdirectories; the
    workspace's attributes are not read, as in diff_stats); with nothing committed nothing
    is listed; a split index is read; where git cannot list them, the save goes through
    without them."""
    dest = tmp_path / "ws"
    base = await git.init_workspace(dest)
    (dest / "gone.txt").write_text("x\n")
    first = await git.save(dest, "First", base=base)
    assert first.files == [FileStat("gone.txt", 1, 0, False)]
    (dest / "gone.txt").unlink()
    (dest / "sub").mkdir()
    (dest / "sub" / "a.txt").write_text("1\n2\n3\n")
    (dest / "blob.bin").write_bytes(b"\0\1\2")
    (dest / ".gitattributes").write_text("*.txt binary\n")
    for changed in (False, True):
        calls = len(argv_log.read_text().splitlines())
        saved = await git.save(dest, "Second", changed=changed, base=first.head)
        assert len(argv_log.read_text().splitlines()) - calls == (4 if not changed else 3)
        listed = await git.diff_stats(dest, first.head, saved.head)
        assert saved.only_commit_on(first.head) and saved.files == listed.files
        assert [(f.path, f.binary) for f in listed.files] == [
            (".gitattributes", False), ("blob.bin", True), ("gone.txt", False),
            ("sub/a.txt", False),
        ]  # fmt: skip
        sh(dest, "reset", "-q", "--soft", first.head)  # the same work, to save again
    sh(dest, "-c", "user.name=a", "-c", "user.email=a@x", "commit", "-qm", "Agent's own")
    head = sh(dest, "rev-parse", "HEAD")
    nothing = await git.save(dest, "Nothing", changed=True, base=first.head)
    assert nothing == Saved(head, False, head)  # no commit: nothing listed
    sh(dest, "update-index", "--split-index")  # its other half in the workspace's .git
    (dest / "late.txt").write_text("late\n")
    split = await git.save(dest, "Split", changed=True, base=head)
    assert split.files == (await git.diff_stats(dest, head, split.head)).files
    # Where git cannot list them, the save goes through all the same.
    (tmp_path / "state" / "objects-sha1.git" / "HEAD").write_text("junk\n")
    (dest / "later.txt").write_text("later\n")
    unlisted = await git.save(dest, "Unlisted", changed=True, base=split.head)
    assert unlisted.committed and unlisted.files is None
    assert sh(dest, "show", "--format=", "--name-only", "HEAD").split() == ["later.txt"]


async def test_a_listing_that_times_out_leaves_the_commit_standing(tmp_path: Path) -> None:
    """The listing beside the commit runs under git's timeout like any call: when it runs
    out, the save still reports its commit, without files (the stats list them after)."""
    real = shutil.which("git")
    assert real
    shim = tmp_path / "bin" / "git"
    shim.parent.mkdir()
    shim.write_text(
        f'#!/bin/sh\ncase "$*" in *"diff --cached"*) sleep 30 ;; esac\nexec \'{real}\' "$@"\n'
    )
    shim.chmod(0o755)
    slow = Git(tmp_path / "state", timeout=1, git=str(shim))
    dest = tmp_path / "ws"
    base = await slow.init_workspace(dest)
    (dest / "a.txt").write_text("a\n")
    started = time.monotonic()
    saved = await slow.save(dest, "Add a", changed=True, base=base)
    assert saved.committed and saved.files is None and time.monotonic() - started < 10
    assert sh(dest, "show", "--format=", "--name-only", "HEAD").split() == ["a.txt"]


async def test_the_head_after_a_commit_is_read_only_from_plain_files(
    git: Git, tmp_path: Path
) -> None:
    """committed_head reads HEAD and its branch's loose ref; a detached HEAD is its own
    id; a symlink, a symbolic ref to elsewhere, an odd name or a missing loose ref gives
    None (the caller asks git)."""
    dest = tmp_path / "ws"
    await git.init_workspace(dest)
    (dest / "a.txt").write_text("a\n")
    head = await git.commit_all(dest, "Add a")
    gitdir = dest / ".git"
    assert committed_head(gitdir) == head
    outside = tmp_path / "outside"
    outside.write_text("f" * 40 + "\n")
    for text in (
        "ref: refs/heads/../../../outside\n",
        "ref: refs/heads/.hidden\n",
        "ref: refs/remotes/origin/main\n",
        "ref: refs/heads/nowhere\n",
        "junk\n",
    ):
        (gitdir / "HEAD").write_text(text)
        assert committed_head(gitdir) is None, text
    (gitdir / "HEAD").write_text(f"{head}\n")
    assert committed_head(gitdir) == head
    (gitdir / "HEAD").unlink()
    (gitdir / "HEAD").symlink_to(outside)
    assert committed_head(gitdir) is None
    (gitdir / "HEAD").unlink()
    (gitdir / "HEAD").write_text("ref: refs/heads/main\n")
    ref = gitdir / "refs" / "heads" / "main"
    ref.unlink()
    ref.symlink_to(outside)
    assert committed_head(gitdir) is None


async def test_diff_stats_and_unified_diff(git: Git, tmp_path: Path) -> None:
    """diff_stats lists each changed file with lines added/removed (binary files flagged),
    totals, and the commits of base..head oldest first; unified_diff is git's patch."""
    dest = tmp_path / "ws"
    base = await git.init_workspace(dest)
    (dest / "a.txt").write_text("one\ntwo\nthree\n")
    (dest / "gone.txt").write_text("bye\n")
    (dest / "logo.bin").write_bytes(b"\x00\x01\x02")
    (dest / "we ird\tname.txt").write_text("odd\n")
    first = await git.commit_all(dest, "First")
    (dest / "a.txt").write_text("one\n2\nthree\nfour\n")
    (dest / "gone.txt").unlink()
    second = await git.commit_all(dest, "Second")

    stats = await git.diff_stats(dest, base)
    assert stats == DiffStats(
        base_sha=base,
        head_sha=str(second),
        commits=[str(first), str(second)],
        files=[
            FileStat("a.txt", 4, 0, False),
            FileStat("logo.bin", 0, 0, True),
            FileStat("we ird\tname.txt", 1, 0, False),
        ],
    )
    assert (stats.files_changed, stats.lines_added, stats.lines_removed) == (3, 5, 0)
    second_only = await git.diff_stats(dest, str(first), "HEAD")
    assert second_only.commits == [second]
    assert {f.path: (f.added, f.removed) for f in second_only.files} == {
        "a.txt": (2, 1),
        "gone.txt": (0, 1),
    }
    assert second_only.to_dict()["linesAdded"] == 2 and second_only.to_dict()["filesChanged"] == 2

    patch = await git.unified_diff(dest, str(first))
    assert "diff --git a/a.txt b/a.txt" in patch
    assert "-two\n+2\n" in patch and "+four\n" in patch
    assert "deleted file mode" in patch and "-bye\n" in patch
    assert await git.unified_diff(dest, "HEAD") == ""


def _hanging_listener() -> socket.socket:
    """A TCP port that accepts connections (via the backlog) and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    return listener


def _git_processes_for(port: int) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if f"127.0.0.1:{port}" in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


async def _eventually(check: Callable[[], bool], seconds: float = 5.0) -> bool:
    """Poll ``check`` until it holds or ``seconds`` pass (processes end asynchronously)."""
    for _ in range(int(seconds / 0.05)):
        if check():
            return True
        await asyncio.sleep(0.05)
    return check()


async def _no_processes_left(port: int) -> None:
    assert await _eventually(lambda: not _git_processes_for(port)), _git_processes_for(port)


async def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    """A git call that exceeds its timeout is a GitError, and git and its remote helper
    are killed and reaped."""
    listener = _hanging_listener()
    port = listener.getsockname()[1]
    slow = Git(tmp_path / "state", timeout=1, allow_http=True)
    try:
        started = time.monotonic()
        with pytest.raises(GitError, match="timed out after 1s"):
            await slow.remote_default_branch(f"http://127.0.0.1:{port}/x.git", TOKEN)
        assert time.monotonic() - started < 5
        await _no_processes_left(port)
    finally:
        listener.close()


async def test_cancellation_kills_the_whole_process_group(tmp_path: Path) -> None:
    """Cancelling the task running a git call kills git and its helpers, and the
    cancellation propagates."""
    listener = _hanging_listener()
    port = listener.getsockname()[1]
    git = Git(tmp_path / "state", timeout=60, allow_http=True)
    try:
        task = asyncio.create_task(
            git.ensure_mirror(f"http://127.0.0.1:{port}/x.git", TOKEN, tmp_path / "cache")
        )
        assert await _eventually(lambda: bool(_git_processes_for(port)))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await _no_processes_left(port)
        # The half-made clone was removed: no mirror, no staging directory.
        assert [p for p in (tmp_path / "cache").iterdir() if p.is_dir()] == []
    finally:
        listener.close()


@pytest.mark.parametrize(
    ("prompt", "suffix", "expected"),
    [
        ("Add a login page", None, "agentyard/add-a-login-page-3f2b8c1d"),
        ("Fix: the/thing (again)!", None, "agentyard/fix-the-thing-again-3f2b8c1d"),
        ("Ärger über Café — naïve façade", None, "agentyard/arger-uber-cafe-naive-facade-3f2b8c1d"),
        ("", None, "agentyard/task-3f2b8c1d"),
        ("日本語のプロンプト 🚀", None, "agentyard/task-3f2b8c1d"),
        ("..//@{HEAD}~^:?*[\\.lock", None, "agentyard/head-lock-3f2b8c1d"),
        ("   --force   ", None, "agentyard/force-3f2b8c1d"),
        ("Refactor", "Claude Code 2", "agentyard/refactor-3f2b8c1d-claude-code-2"),
        ("Refactor", "", "agentyard/refactor-3f2b8c1d"),
    ],
)
def test_branch_name(prompt: str, suffix: str | None, expected: str) -> None:
    """Branch names slug the prompt (ASCII, lowercase, punctuation and slashes to dashes),
    fall back to 'task', and append the run id's first 8 characters and an optional
    suffix; git accepts every one."""
    name = branch_name(prompt, RUN_ID, suffix)
    assert name == expected
    subprocess.run(["git", "check-ref-format", "--branch", name], check=True, timeout=10)


def test_long_prompts_are_cut() -> None:
    """A very long prompt gives a slug of at most 40 characters not ending in a dash."""
    name = branch_name("word-" * 200, RUN_ID, "agent-" * 20)
    slug = name.removeprefix("agentyard/").split("-3f2b8c1d")[0]
    assert len(slug) <= 40 and not slug.endswith("-")
    assert len(name) < 120
    subprocess.run(["git", "check-ref-format", "--branch", name], check=True, timeout=10)


# -- a workspace's .git is the agent's: the server's git must not run it or leave it ---------


def _evil(tmp_path: Path, what: str) -> str:
    """A shell command that leaves the marker ``pwned-<what>`` and passes stdin through (so
    a filter that ran would still give git the file's content)."""
    return f"touch '{tmp_path}/pwned-{what}'; cat"


def _plant_filter(dest: Path, tmp_path: Path) -> None:
    for key in ("clean", "smudge", "process"):
        sh(dest, "config", f"filter.x.{key}", _evil(tmp_path, f"filter-{key}"))
    sh(dest, "config", "filter.x.required", "true")
    (dest / ".gitattributes").write_text("* filter=x diff=x merge=x\n")


def _plant_fsmonitor(dest: Path, tmp_path: Path) -> None:
    sh(dest, "config", "core.fsmonitor", _evil(tmp_path, "fsmonitor"))
    sh(dest, "config", "core.untrackedCache", "true")


def _plant_textconv(dest: Path, tmp_path: Path) -> None:
    sh(dest, "config", "diff.x.textconv", _evil(tmp_path, "textconv"))
    sh(dest, "config", "diff.x.command", _evil(tmp_path, "diff-command"))
    (dest / ".gitattributes").write_text("* diff=x\n")


def _plant_external_diff(dest: Path, tmp_path: Path) -> None:
    sh(dest, "config", "diff.external", _evil(tmp_path, "external-diff"))


def _plant_include(dest: Path, tmp_path: Path) -> None:
    evil = tmp_path / "evil.config"
    evil.write_text(f'[filter "x"]\n\tclean = "{_evil(tmp_path, "included-filter")}"\n')
    sh(dest, "config", "include.path", str(evil))
    sh(dest, "config", "includeIf.gitdir:/.path", str(evil))
    (dest / ".gitattributes").write_text("* filter=x\n")


def _plant_info_attributes(dest: Path, tmp_path: Path) -> None:
    sh(dest, "config", "filter.y.clean", _evil(tmp_path, "info-attributes"))
    (dest / ".git" / "info").mkdir(exist_ok=True)
    (dest / ".git" / "info" / "attributes").write_text("* filter=y\n")


def _plant_worktree_config(dest: Path, tmp_path: Path) -> None:
    sh(dest, "config", "core.repositoryformatversion", "1")
    sh(dest, "config", "extensions.worktreeConfig", "true")
    sh(dest, "config", "--worktree", "filter.z.clean", _evil(tmp_path, "worktree-config"))
    (dest / ".gitattributes").write_text("* filter=z\n")


def _plant_gpg_and_friends(dest: Path, tmp_path: Path) -> None:
    for key, what in (
        ("gpg.program", "gpg"),
        ("gpg.ssh.program", "gpg-ssh"),
        ("core.sshCommand", "ssh"),
        ("core.pager", "pager"),
        ("pager.diff", "pager-diff"),
        ("core.editor", "editor"),
        ("sequence.editor", "sequence-editor"),
        ("core.askPass", "askpass"),
        ("credential.helper", "credential"),
        ("core.hooksPath", "hooks-path"),
    ):
        sh(
            dest,
            "config",
            key,
            f"!{_evil(tmp_path, what)}" if what == "credential" else _evil(tmp_path, what),
        )
    sh(dest, "config", "commit.gpgSign", "true")
    sh(dest, "config", "tag.gpgSign", "true")
    for hook in ("pre-commit", "post-commit", "post-checkout", "reference-transaction"):
        path = dest / ".git" / "hooks" / hook
        path.write_text(f"#!/bin/sh\ntouch '{tmp_path}/pwned-hook-{hook}'\n")
        path.chmod(0o755)


def _plant_alternates(dest: Path, tmp_path: Path) -> None:
    """Alternates into another repository (whose objects the server must never read or push),
    and the command git runs to list an alternate's refs."""
    other = tmp_path / "other-repo"
    if not other.exists():
        subprocess.run(["git", "init", "-q", str(other)], check=True, timeout=30)
        (other / "secret.txt").write_text("another user's secret\n")
        sh(other, "add", "secret.txt")
        sh(other, "-c", "user.name=o", "-c", "user.email=o@x", "commit", "-qm", "secret")
    info = dest / ".git" / "objects" / "info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "alternates").write_text(f"{other}/.git/objects\n")
    sh(dest, "config", "core.alternateRefsCommand", _evil(tmp_path, "alternate-refs"))


def _plant_worktree_outside(dest: Path, tmp_path: Path) -> None:
    """core.worktree aimed at a directory outside the workspace: its files must never be
    committed (and so pushed)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    (elsewhere / "stolen.txt").write_text("server secret\n")
    sh(dest, "config", "core.worktree", str(elsewhere))


HOSTILE = {
    "filter": _plant_filter,
    "fsmonitor": _plant_fsmonitor,
    "textconv": _plant_textconv,
    "external-diff": _plant_external_diff,
    "include": _plant_include,
    "info-attributes": _plant_info_attributes,
    "worktree-config": _plant_worktree_config,
    "gpg-pager-editor-hooks": _plant_gpg_and_friends,
    "alternates": _plant_alternates,
    "worktree-outside": _plant_worktree_outside,
}


def _assert_clean_git_dir(dest: Path) -> None:
    """The workspace's git directory holds nothing the agent planted to be acted upon."""
    gitdir = dest / ".git"
    config = (gitdir / "config").read_text()
    for gone in ("filter", "fsmonitor", "textconv", "external", "include", "worktree",
                 "gpg", "pager", "editor", "askPass", "helper", "hooksPath", "sshCommand",
                 "alternateRefs", "pwned"):  # fmt: skip
        assert gone not in config, (gone, config)
    assert not (gitdir / "objects" / "info" / "alternates").exists()
    assert not (gitdir / "info" / "attributes").exists()
    assert not (gitdir / "config.worktree").exists()


@pytest.mark.parametrize("plant", list(HOSTILE))
async def test_hostile_workspace_git_runs_nothing_on_the_server(
    git: Git, server: GitHttpServer, url: str, tmp_path: Path, plant: str
) -> None:
    """Whatever an agent plants in its workspace's .git (filters, fsmonitor, textconv,
    external diffs, includes, info/attributes, per-worktree config, gpg/pager/editor
    programs, hooks, alternates, core.worktree), the server's git runs none of it and reads
    nothing outside the workspace: the commit, the diffs, the push, a follow-up's fetch and
    checkout all work and take the agent's files as they are."""
    dest, branch = await first_run(git, url, tmp_path)
    base = sh(dest, "rev-parse", "HEAD")
    HOSTILE[plant](dest, tmp_path)
    (dest / "agent.txt").write_text("the agent's work\n")

    sha = await git.commit_all(dest, "Agent work")
    assert sha and await git.head(dest) == sha
    assert sh(dest, "show", f"{sha}:agent.txt") == "the agent's work"
    assert "stolen.txt" not in sh(dest, "ls-tree", "-r", "--name-only", sha)
    stats = await git.diff_stats(dest, base)
    assert "agent.txt" in {f.path for f in stats.files} and stats.commits == [sha]
    patch = await git.unified_diff(dest, base, sha)
    assert "diff --git a/agent.txt b/agent.txt" in patch and "+the agent's work" in patch
    await git.push(url, TOKEN, dest, branch)
    assert server.read_file("demo", branch, "agent.txt") == "the agent's work\n"
    assert server.read_file("demo", branch, "secret.txt") is None
    _assert_clean_git_dir(dest)
    assert sh(dest, "remote", "get-url", "origin") == url

    # A follow-up in a fresh workspace, planted again before the branch is fetched and
    # checked out (smudge filters, post-checkout hooks): still nothing runs.
    mirror = await git.ensure_mirror(url, TOKEN, tmp_path / "cache")
    again = tmp_path / "ws2"
    await git.checkout_workspace(url, mirror, again, "main")
    HOSTILE[plant](again, tmp_path)
    (again / ".gitattributes").unlink(missing_ok=True)  # the branch brings its own
    assert await git.fetch_branch(url, TOKEN, again, branch) == sha
    assert (again / "agent.txt").read_text() == "the agent's work\n"
    HOSTILE[plant](again, tmp_path)
    await git.create_branch(again, "agentyard/next-12345678")
    (again / "more.txt").write_text("more\n")
    assert await git.commit_all(again, "More")
    _assert_clean_git_dir(again)

    assert sorted(p.name for p in tmp_path.glob("pwned*")) == []


async def test_diffs_while_the_agent_works_read_no_workspace_config(
    git: Git, tmp_path: Path
) -> None:
    """The API may ask for a diff while an agent still works in the workspace: with full
    commit ids the diffs run none of the agent's config (textconv, external diff, pager,
    fsmonitor, includes, output options) and change nothing in its .git."""
    dest = tmp_path / "ws"
    base = await git.init_workspace(dest)
    (dest / "a.txt").write_text("one\n")
    head = await git.commit_all(dest, "First")
    assert head
    for plant in ("filter", "fsmonitor", "textconv", "external-diff", "include"):
        HOSTILE[plant](dest, tmp_path)
    for key, value in (
        ("diff.noprefix", "true"),
        ("diff.mnemonicPrefix", "true"),
        ("color.diff", "always"),
        ("color.ui", "always"),
        ("diff.relative", "true"),
        ("core.pager", _evil(tmp_path, "pager")),
        ("core.commitGraph", "true"),
    ):
        sh(dest, "config", key, value)
    (dest / ".git" / "info").mkdir(exist_ok=True)
    (dest / ".git" / "info" / "attributes").write_text("* diff=x filter=x\n")
    before = {p: p.read_bytes() for p in (dest / ".git").rglob("*") if p.is_file()}

    stats = await git.diff_stats(dest, base, head)
    assert stats.files == [FileStat("a.txt", 1, 0, False)] and stats.commits == [head]
    patch = await git.unified_diff(dest, base, head)
    assert patch.startswith("diff --git a/a.txt b/a.txt\n") and "\x1b[" not in patch
    assert "+one\n" in patch

    assert not list(tmp_path.glob("pwned*"))
    after = {p: p.read_bytes() for p in (dest / ".git").rglob("*") if p.is_file()}
    assert after == before  # the agent's .git is as it left it


async def test_diffs_refuse_objects_that_lead_outside(git: Git, tmp_path: Path) -> None:
    """A diff while the agent works never follows alternates or a symlink out of the
    workspace's object store: GitError (the diff works again once the run's commit has made
    the git directory trustworthy)."""
    dest = tmp_path / "ws"
    base = await git.init_workspace(dest)
    (dest / "a.txt").write_text("one\n")
    head = await git.commit_all(dest, "First")
    assert head
    _plant_alternates(dest, tmp_path)
    with pytest.raises(GitError, match="alternates"):
        await git.diff_stats(dest, base, head)
    with pytest.raises(GitError, match="alternates"):
        await git.unified_diff(dest, base, head)
    assert await git.commit_all(dest, "Nothing new") is None  # drops the alternates
    assert (await git.diff_stats(dest, base, head)).commits == [head]

    info = dest / ".git" / "objects" / "info"
    shutil.rmtree(info)
    info.symlink_to(tmp_path / "other-repo" / ".git" / "objects" / "info")
    with pytest.raises(GitError, match="symlink"):
        await git.unified_diff(dest, base, head)


def _redirect_to_other_repo(dest: Path, tmp_path: Path, how: str) -> Path:
    """Make ``dest``'s git directory lead to another repository; that repository."""
    other = tmp_path / "victim"
    subprocess.run(["git", "init", "-q", "-b", "main", str(other)], check=True, timeout=30)
    (other / "v.txt").write_text("victim\n")
    sh(other, "add", "v.txt")
    sh(other, "-c", "user.name=v", "-c", "user.email=v@x", "commit", "-qm", "victim")
    sh(other, "config", "filter.x.clean", _evil(tmp_path, f"{how}-filter"))
    sh(other, "config", "core.fsmonitor", _evil(tmp_path, f"{how}-fsmonitor"))
    gitdir = dest / ".git"
    if how == "gitdir-file":
        shutil.rmtree(gitdir)
        gitdir.write_text(f"gitdir: {other / '.git'}\n")
    elif how == "symlink":
        shutil.rmtree(gitdir)
        gitdir.symlink_to(other / ".git")
    elif how == "commondir":
        (gitdir / "commondir").write_text(f"{other / '.git'}\n")
    elif how == "symlinked-refs":
        shutil.rmtree(gitdir / "refs")
        (gitdir / "refs").symlink_to(other / ".git" / "refs")
    elif how == "symlinked-config":
        (gitdir / "config").unlink()
        (gitdir / "config").symlink_to(other / ".git" / "config")
    (dest / ".gitattributes").write_text("* filter=x\n")
    (dest / "agent.txt").write_text("work\n")
    return other


@pytest.mark.parametrize(
    "how", ["gitdir-file", "symlink", "commondir", "symlinked-refs", "symlinked-config"]
)
async def test_git_dirs_leading_elsewhere_are_refused(
    git: Git, server: GitHttpServer, url: str, tmp_path: Path, how: str
) -> None:
    """A .git that is a gitdir: file or a symlink, a commondir redirect, or a symlink inside
    .git: every server-side git call on the workspace fails cleanly with GitError, and the
    repository it leads to is neither changed nor its config acted upon."""
    dest, branch = await first_run(git, url, tmp_path)
    base = sh(dest, "rev-parse", "HEAD")
    other = _redirect_to_other_repo(dest, tmp_path, how)
    victim_head = sh(other, "rev-parse", "HEAD")
    victim_config = (other / ".git" / "config").read_text()
    victim_index = (other / ".git" / "index").read_bytes()

    calls = {
        "commit_all": lambda: git.commit_all(dest, "Agent work"),
        "head": lambda: git.head(dest),
        "create_branch": lambda: git.create_branch(dest, "agentyard/x-12345678"),
        "push": lambda: git.push(url, TOKEN, dest, branch),
        "fetch_branch": lambda: git.fetch_branch(url, TOKEN, dest, branch),
        "diff_stats": lambda: git.diff_stats(dest, base),
        "unified_diff": lambda: git.unified_diff(dest, base),
    }
    for name, call in calls.items():
        with pytest.raises(GitError, match="not a workspace"):
            await call()
        assert sh(other, "rev-parse", "HEAD") == victim_head, name
    if how in ("gitdir-file", "symlink"):  # the diffs need the workspace's objects
        for diff in (git.diff_stats, git.unified_diff):
            with pytest.raises(GitError, match="not a workspace"):
                await diff(dest, base, base)
    # (Inspected without git: the victim's own config is hostile too.)
    assert (other / ".git" / "index").read_bytes() == victim_index
    assert (other / ".git" / "config").read_text() == victim_config
    assert server.branches("demo")[branch] == base
    assert not list(tmp_path.glob("pwned*"))


@pytest.mark.parametrize("where", [".git/index", ".git/objects/pack/pack-x.idx"])
async def test_a_fifo_in_git_is_refused_at_once(git: Git, tmp_path: Path, where: str) -> None:
    """A FIFO the agent left in .git (git would wait on it until its timeout) or a socket:
    the save refuses the workspace at once, naming the file, and so do the diffs where they
    would read it (the object store)."""
    dest = tmp_path / "ws"
    base = await git.init_workspace(dest)
    (dest / "a.txt").write_text("a\n")
    (dest / where).parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(dest / where)
    started = time.monotonic()
    with pytest.raises(GitError, match=re.escape(f"{where} is not a regular file")):
        await git.save(dest, "Add a", changed=True, base=base)
    if "objects" in where:  # the diffs read the objects only, never the index
        with pytest.raises(GitError, match="not a regular file"):
            await git.diff_stats(dest, base, base)
    else:
        assert (await git.diff_stats(dest, base, base)).files == []
    assert time.monotonic() - started < 5  # not git's timeout (20 s here)
    (dest / where).unlink()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(dest / ".git" / "listening"))
        with pytest.raises(GitError, match=re.escape(".git/listening is not a regular file")):
            await git.head(dest)


async def test_a_nested_repository_runs_nothing(git: Git, tmp_path: Path) -> None:
    """A repository the agent makes inside its workspace (committed as a gitlink) has its
    own hostile config: the server's commit does not act on it either."""
    dest = tmp_path / "ws"
    await git.init_workspace(dest)
    nested = dest / "vendor" / "lib"
    nested.mkdir(parents=True)
    sh(nested, "init", "-q")
    (nested / "x.txt").write_text("x\n")
    sh(nested, "add", "x.txt")
    sh(nested, "-c", "user.name=n", "-c", "user.email=n@x", "commit", "-qm", "n")
    _plant_filter(nested, tmp_path)
    _plant_fsmonitor(nested, tmp_path)
    (nested / "x.txt").write_text("changed\n")
    assert await git.commit_all(dest, "With a nested repository")
    assert not list(tmp_path.glob("pwned*"))
