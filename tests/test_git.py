"""Git through the real CLI against a real smart-HTTP git server on 127.0.0.1: mirrors,
workspaces, branches, commits, pushes, follow-ups, diffs, and where the token may (only the
environment of network commands) and may not (argv, URLs, config, errors) appear."""

from __future__ import annotations

import asyncio
import os
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
from agentyard.workspace.git import DiffStats, FileStat, Git, GitError

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
