"""Lifecycle overhead of the server, on the scripted model with the real Claude CLI.

Prints:
- the median end-to-end time of a task through the server (POST to the `finish` event on
  its SSE stream) divided by the median time of the same script run directly through the SDK
  (`claude_agent_sdk.query`), both medians and their difference (the time the server adds);
  the direct run is timed in a plain directory and in a git repository with one commit (a
  run's workspace is one, and the CLI inspects a repository before its first request), each
  round running both and then the task through the server, side by side;
- p50/p99 of the time from POST to the agent process starting (the CLI process carrying the
  run's id appearing on the machine);
- the median end-to-end time again with 50 SSE subscribers on every run (a run must not slow
  down for its audience).

Usage: python bench/lifecycle.py [--runs 20] [--sandbox bwrap|none]

With the native model bridge, SQLite on the event loop and cheaper saves, alternating with
the commit before (12 runs each, load 0.7-11: the CLI itself loads both cores): server/direct
1.28, 1.26 (adds 257, 231 ms) -> 1.17, 1.28 (adds 143, 248 ms); 1.16, 1.20, 1.22 (adds
116-159 ms) in quieter runs; POST -> agent process started p50 48.2, 58.4 -> 34.3, 42.6 ms.

Then (the sandbox's /etc as one bind, cheaper claims and transactions), after the commit
before on a loaded machine (load 7-12, the SDK alone 847 -> 1,289 ms: not comparable):
1.24 (adds 206 ms) -> 1.13 (adds 167 ms); POST -> agent started p50 25.6 -> 29.9 ms.

Then, on a quicker machine (cgroup moves favoured, a save in three git processes): 1.15
(adds 83 ms; 1.08, 49 ms against the git repository) -> 1.13 (adds 86 ms; 1.07, 49 ms), the
SDK alone 546 -> 680 ms: the CLI loads both cores (load 10 at the end of each). With a run
that reported writing a file saved in two git processes: 1.12 (adds 81 ms; 1.06, 42 ms).

Then, on a slower machine of the kind: this script's own /proc poll (every 5 ms, through the
whole of every round) was loading the machine and the process the SDK ran in; it now polls
only until the run's agent appears, rounds alternate their order, and the paired (round by
round) median is printed beside the ratio of medians. Against the git repository, the start
of that work gave 1.12, 1.03 (adds 92, 17 ms; paired 77, 24 ms); with a spare workspace
renamed into place, the files listed beside the commit and the first events stored while the
agent starts: 1.03, 1.07, 1.05, 1.02, 1.01 (adds 23, 46, 38, 18, 12 ms; paired 13, 59, 36,
21, 25 ms), POST -> agent process started p50 29.1, 18.6 -> 15.0-16.5 ms. The SDK alone took
642-807 ms in a git repository across these runs (901 in the last): the CLI's own time moves
by more than the server adds. The server's own part, stamped inside it on a quiet machine:
9-13 ms from POST to the agent's process, 12-15 ms from the agent's exit to `finish` on the
stream (add, then commit beside the listing, 8 ms of it).

On a third, quicker machine of the kind (the SDK alone 546-583 ms in a git repository), the
same code: 1.04, 1.01, 1.04 (adds 24, 4, 24 ms; paired 27, 17, 23 ms); POST -> agent process
started p50 11.7-14.3 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import claude_agent_sdk as sdk

from agentyard.runtimes.processes import marked_processes
from agentyard.testing.harness import API_KEY, ServerProcess, server_env, sse_frames
from agentyard.testing.scripted_model import ScriptedModelServer
from figures import percentile

SCRIPT: dict[str, Any] = {
    "scenarios": [
        {
            "turns": [
                {
                    "text": "Writing.",
                    "tool_calls": [
                        {"name": "Write", "input": {"file_path": "{cwd}/a.txt", "content": "a"}}
                    ],
                },
                {"text": "done"},
            ]
        }
    ]
}


async def direct_run(model: ScriptedModelServer, workdir: Path, config: Path) -> float:
    options = sdk.ClaudeAgentOptions(
        cwd=str(workdir),
        permission_mode="bypassPermissions",
        setting_sources=[],
        system_prompt={"type": "preset", "preset": "claude_code"},
        model="claude-sonnet-4-5",
        env={
            "ANTHROPIC_BASE_URL": model.url,
            "ANTHROPIC_API_KEY": "sk-ant-scripted",
            "CLAUDE_CONFIG_DIR": str(config),
            "IS_SANDBOX": "1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        },
    )
    started = time.monotonic()
    async for message in sdk.query(prompt="write a", options=options):
        if isinstance(message, sdk.ResultMessage):
            assert not message.is_error, message
    return time.monotonic() - started


def git_init(path: Path) -> None:
    """A repository with one empty commit, as a run's workspace starts."""
    path.mkdir()
    subprocess.run(["git", "init", "--quiet", "-b", "main"], cwd=path, check=True)
    subprocess.run(
        ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit",
         "--quiet", "--allow-empty", "-m", "Workspace created"],
        cwd=path,
        check=True,
    )  # fmt: skip


class ProcessWatch:
    """Notes when a process carrying a run id first appears: polls /proc every 5 ms, only
    between :meth:`expect` and that moment (a poll reads every process's environment, so a
    watch left running would load the machine, and this process, all the time)."""

    def __init__(self) -> None:
        self.first_seen: dict[str, float] = {}
        self._waiting: set[str] = set()
        self._wake = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> ProcessWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify()
        self._thread.join()

    def expect(self, run_id: str) -> None:
        with self._wake:
            self._waiting.add(run_id)
            self._wake.notify()

    def _poll(self) -> None:
        while True:
            with self._wake:
                while not self._waiting and not self._stop:
                    self._wake.wait()
                if self._stop:
                    return
            now = time.monotonic()
            seen = marked_processes()
            with self._wake:
                for run_id in list(self._waiting):
                    if run_id in seen:
                        self.first_seen[run_id] = now
                        self._waiting.discard(run_id)
            time.sleep(0.005)


def watch_stream(url: str, key: str, run_id: str, done: threading.Barrier) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        done.wait()
        with client.stream("GET", f"/api/v1/tasks/{run_id}/logs/stream") as response:
            for _ in sse_frames(response):
                pass


def run_seconds(client: Any, run_id: str) -> float:
    """The run's own duration as the server recorded it (startedAt to completedAt)."""
    from datetime import datetime

    task = client.get(f"/api/v1/tasks/{run_id}").json()
    started = datetime.fromisoformat(task["startedAt"].replace("Z", "+00:00"))
    completed = datetime.fromisoformat(task["completedAt"].replace("Z", "+00:00"))
    return (completed - started).total_seconds()


def timed_run(client: Any, server: ServerProcess, subscribers: int) -> tuple[float, float]:
    posted = time.monotonic()
    run = client.post("/api/v1/tasks", json={"prompt": "write a"}).json()
    barrier = threading.Barrier(subscribers + 1)
    threads = [
        threading.Thread(
            target=watch_stream, args=(server.url, API_KEY, run["runId"], barrier), daemon=True
        )
        for _ in range(subscribers)
    ]
    for thread in threads:
        thread.start()
    barrier.wait()
    with client.stream("GET", f"/api/v1/tasks/{run['runId']}/logs/stream", timeout=120) as r:
        for frame in sse_frames(r):
            if frame.data and frame.data["type"] == "finish":
                assert frame.data["status"] == "completed", frame.data
    elapsed = time.monotonic() - posted
    for thread in threads:
        thread.join(timeout=60)
    return elapsed, run_seconds(client, run["runId"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--sandbox", choices=["bwrap", "none"], default="bwrap")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ScriptedModelServer(SCRIPT) as model:
        root = Path(tmp)
        direct: list[float] = []
        direct_git: list[float] = []
        env = server_env(
            root / "yard",
            {
                "ANTHROPIC_BASE_URL": model.url,
                "ANTHROPIC_API_KEY": "sk-ant-scripted",
                "AGENTYARD_LOG_LEVEL": "warning",
                "AGENTYARD_SANDBOX": args.sandbox,
            },
        )
        server = ServerProcess(root / "yard", env).start()
        through: list[float] = []
        spawn: list[float] = []
        alone: list[float] = []
        try:
            with server.client() as client, ProcessWatch() as watch:

                def through_server() -> tuple[float, str, float]:
                    """The task's time end to end, its run id and when it was posted."""
                    posted = time.monotonic()
                    run = client.post("/api/v1/tasks", json={"prompt": "write a"}).json()
                    watch.expect(run["runId"])
                    path = f"/api/v1/tasks/{run['runId']}/logs/stream"
                    with client.stream("GET", path, timeout=120) as response:
                        for frame in sse_frames(response):
                            if frame.data and frame.data["type"] == "finish":
                                assert frame.data["status"] == "completed", frame.data
                    return time.monotonic() - posted, str(run["runId"]), posted

                # Side by side: each round runs the SDK alone in a plain directory, the SDK
                # alone in a git repository (as a run's workspace is) and a task through the
                # server; every other round in the reverse order, so that neither side
                # always follows the other.
                for i in range(args.runs + 1):
                    work = root / f"direct-{i}"
                    work.mkdir()
                    repo = root / f"direct-git-{i}"
                    git_init(repo)
                    if i % 2 == 0:
                        plain = asyncio.run(direct_run(model, work, root / f"cfg-{i}"))
                        in_git = asyncio.run(direct_run(model, repo, root / f"cfg-git-{i}"))
                        elapsed, run_id, posted = through_server()
                    else:
                        elapsed, run_id, posted = through_server()
                        in_git = asyncio.run(direct_run(model, repo, root / f"cfg-git-{i}"))
                        plain = asyncio.run(direct_run(model, work, root / f"cfg-{i}"))
                    if i == 0:
                        continue  # a warm-up round: caches, the server's first run
                    direct.append(plain)
                    direct_git.append(in_git)
                    through.append(elapsed)
                    spawn.append(watch.first_seen[run_id] - posted)
                    alone.append(run_seconds(client, run_id))
                watched = [timed_run(client, server, 50) for _ in range(args.runs)]
        finally:
            server.stop()
    d, s = statistics.median(direct), statistics.median(through)
    one, five, fifteen = os.getloadavg()
    print(
        f"runs: {args.runs}, sandbox: {args.sandbox}, cores: {os.cpu_count()}, "
        f"load average: {one:.2f} {five:.2f} {fifteen:.2f} (at end)"
    )
    g = statistics.median(direct_git)
    print(f"direct through the SDK: median {g * 1000:.0f} ms (in a git repository, as a run's)")
    print(f"  the same in a plain directory: median {d * 1000:.0f} ms (the CLI probes no git)")
    print(f"through the server:     median {s * 1000:.0f} ms")
    paired = statistics.median(t - a for t, a in zip(through, direct_git, strict=True))
    print(
        f"ratio server/direct:    {s / g:.2f} (the server adds {(s - g) * 1000:.0f} ms; "
        f"round by round, a median {paired * 1000:.0f} ms)"
    )
    paired = statistics.median(t - a for t, a in zip(through, direct, strict=True))
    print(
        f"  against the plain directory: {s / d:.2f} (adds {(s - d) * 1000:.0f} ms; round by "
        f"round {paired * 1000:.0f} ms: the server's part and the CLI's git probes)"
    )
    print(
        f"POST -> agent process started: p50 {percentile(spawn, 0.5) * 1000:.1f} ms, "
        f"p99 {percentile(spawn, 0.99) * 1000:.1f} ms"
    )
    print(
        f"with 50 SSE subscribers (in this process, on the same cores): end to end median "
        f"{statistics.median(w[0] for w in watched) * 1000:.0f} ms; the run itself "
        f"(startedAt..completedAt) median {statistics.median(w[1] for w in watched) * 1000:.0f}"
        f" ms vs {statistics.median(alone) * 1000:.0f} ms unwatched"
    )


if __name__ == "__main__":
    main()
