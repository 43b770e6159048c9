"""What the server adds per run, and how fast a deep queue drains, with the command runtime.

Prints, with the machine's core count and load average:
- a trivial command task (``true``): the median of POST to the ``finish`` event on its SSE
  stream, the median of ``true`` started alone through the same sandbox wrapper (bwrap, the
  per-run script, no server), and the difference: the time the server adds per run
  (workspace, git, events, bookkeeping);
- 1,000 trivial tasks POSTed at once (``AGENTYARD_MAX_CONCURRENT_RUNS=4``): the drain rate
  (tasks from the first POST to the last ``completedAt``), how fast the burst was answered,
  and the latency p50/p99 of POSTs made one at a time while the queue drains (the burst's
  own latencies are mostly its wait for a connection).

Usage: python bench/runs.py [--runs 20] [--tasks 1000] [--probes 100] [--sandbox bwrap|none]

Before and after starting agents from a thread, saving clean trees with one git process,
statements built once and no /proc scan for a run whose cgroups were emptied, alternating
runs on the project's 2-core machine (load 1-4): the server adds 80.3, 72.7 -> 37.6, 36.3 ms
a run; the queue drains at 11.8, 11.8 -> 22.6, 20.7 tasks/s; POST latency while draining
p50 32, 38 -> 18, 20 ms, p99 165, 369 -> 128, 153 ms. With the base commit written with
the next write, at load 0.9: 38.4 ms, 27.3 tasks/s, p50 14.4 ms, p99 62.6 ms.

Then (the native model bridge, SQLite's statements on the event loop, the workspace template
written from memory, cgroups created and removed on the loop), alternating with the commit
before on the same machine (load 0.4-4): POST -> finish 94.6, 85.2 -> 59.3, 63.9 ms; `true`
alone through the wrapper 46.9, 53.2 -> 20.7, 20.1 ms (the bridge's start-up), so the server
adds 47.7, 32.0 -> 38.6, 43.8 ms; drained at 22.2, 20.5 -> 25.3, 24.3 tasks/s (30-35 in runs
of 800 tasks without the probes); POST p50 18.1, 18.8 -> 14.2, 16.0 ms, p99 72.6, 75.2 ->
40.2, 36.1 ms. Runs alone were then spaced 50 ms apart as the server's are (a cgroup join
otherwise finds the last one's grace period): alone 30.9 ms, the server adds 35.6 ms.

Then the client itself was made lean (httpx's async client spent 6-7 ms of CPU per POST,
twice the server's cost, on the same two cores): with it, the commit before drained at 28.7,
28.8 tasks/s. After (/etc as one bind of a start-up copy, claims that read a few indexes, a
larger SQLite pool, statements built once, the runtime directory in /dev/shm), alternating on
the same machine (load 1-4): `true` alone 29.9, 39.4 -> 23.0, 25.9 ms; POST -> finish 58.9,
78.8 -> 58.7, 49.9 ms (the server adds 29.0, 39.5 -> 35.7, 24.0 ms: noise); drained at 28.7,
28.8 -> 35.9, 30.7 tasks/s; the burst answered at 251, 237 -> 316, 329 POSTs/s; POST p99
while draining 31.2, 25.4 -> 34.3, 26.4 ms. The drain is bound by the server process: 25.8 ms
of its CPU per task (POST and run; 18.7 user, 7.1 system) on the one core its event loop and
the GIL allow, a ceiling near 39 tasks/s, while the machine stays a quarter idle. With a
new chat's workspace stored with the run's next write and SQLite transactions that return
their connection directly, two runs at load 0.7-2.5: the server adds 24.0, 28.2 ms; drained
at 31.3, 36.0 tasks/s; burst 334, 389/s; POST p50 9.4, 6.4 ms, p99 21.8, 22.4 ms.

Then, on a quicker machine of the same kind: the same code gave POST -> finish 24.6 ms,
`true` alone 17.5 ms, 67.3 tasks/s, POST p99 9.6 ms. `true` alone waited 12 ms for an RCU
grace period to join its cgroups, which the server's back-to-back runs seldom did: with the
kernel favouring cgroup moves (the sandbox now asks for it), `true` alone took 10.1-10.9 ms,
so the server adds 16.8-18.2 ms (POST -> finish 27.7-28.3 ms); 63.7-68.9 tasks/s; POST p99
14.1-15.8 ms (load 1-7).

Then, on a slower machine of the kind (the CLI's SDK alone 640-900 ms there, 546-685 on the
quicker one), the start of the session's code and its end, alternating: the server adds 19.6
-> 11.4-28.3 ms (noise: `true` alone 10.8-13.2 ms); drained at 48.5 -> 51.4-53.0 tasks/s
(41.5 later, at load 8); POST p99 16.1 -> 13.7-23.6 ms. The drain is bound by the two cores:
per task the server process spent 21.7 ms of CPU (13.6 user, 8.1 system), the sandboxes and
git it started 8.2 ms, the machine 40.7 ms in all of the 49.4 ms its two cores had. Inode
allocation on the journal-less ext4 there was 7-18% of the server's samples (ext4 skips
inodes deleted in the last minutes, so a drain right after another benchmark removed its
thousands of files pays more).

On a third, quicker machine of the kind, the same code: the server adds 21.5, 14.5, 11.3,
11.5 ms (`true` alone 9.1-11.2 ms); drained at 75.8, 72.3, 76.1, 79.2 tasks/s; POST p99
9.6-12.7 ms. Per task the server process spent 10.4-10.9 ms of CPU (7.5 user, 3 system), its
sandboxes and git 5.2 ms, the machine 21.3 ms of the 26 ms its two cores had.
"""

# ruff: noqa: ASYNC221  (a benchmark: the timed sandbox wrapper is started blocking)
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

from agentyard.logging import configure as configure_logging
from agentyard.sandbox.base import SandboxRequest
from agentyard.sandbox.bwrap import BwrapSandbox
from agentyard.testing.harness import API_KEY, ServerProcess, server_env
from figures import machine, percentile
from lean import Connection, Pool

COMMANDS = {"true": {"argv": ["true"]}}
TASK = {"prompt": "nothing", "agent": "command", "model": "true"}


async def true_alone(root: Path, runs: int, sandbox: str) -> list[float]:
    """``true`` as the run's agent process, without the server: through the sandbox wrapper
    (bwrap) when the server confines its runs, else directly."""
    times = []
    if sandbox == "none":
        for _ in range(runs):
            t = time.perf_counter()
            subprocess.run(["true"], check=True)
            times.append(time.perf_counter() - t)
        return times
    (root / "ws").mkdir(parents=True)
    (root / "state").mkdir()
    box = BwrapSandbox(data_dir=root / "box")
    await box.start()
    try:
        async with box.confine(SandboxRequest("bench-run", root / "ws", root / "state")) as run:
            env = run.environment({})
            wrapper = run.command("true", env)
            for _ in range(runs):
                # Apart, as the server's runs are: a process joining a cgroup (v1) waits for
                # an RCU grace period (5-20 ms here) unless another joined just before, so
                # back-to-back runs alone would be cheaper than any run through the server.
                await asyncio.sleep(0.05)
                t = time.perf_counter()
                subprocess.run([wrapper], env=env, check=True)
                times.append(time.perf_counter() - t)
    finally:
        await box.stop()
    return times


async def trivial_runs(server: ServerProcess, runs: int) -> list[float]:
    """POST -> ``finish`` on the run's stream, one run at a time (after one warm-up run)."""
    times = []
    host, port = "127.0.0.1", server.port
    posts, streams = Connection(host, port, API_KEY), Connection(host, port, API_KEY)
    for i in range(runs + 1):
        posted = time.perf_counter()
        run = (await posts.request("POST", "/api/v1/tasks", TASK)).json()
        path = f"/api/v1/tasks/{run['runId']}/logs/stream"
        seen = await streams.stream_until(path, b'"type":"finish"')
        assert b'"status":"completed"' in seen.rpartition(b"data:")[2], seen[-500:]
        if i:
            times.append(time.perf_counter() - posted)
    posts.close()
    return times


def parse(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


async def drain(server: ServerProcess, tasks: int, probes: int) -> tuple[float, float, list[float]]:
    """POST ``tasks`` trivial tasks at once (on 32 connections), then, while they drain,
    ``probes`` more one at a time (a user creating a task meanwhile). Returns the drain rate
    in tasks/s (the first POST to the last ``completedAt``, over all of them), the burst's
    POSTs per second, and each probe POST's latency."""
    client = Pool(server.url, API_KEY, 32)

    async def post() -> str:
        r = await client.request("POST", "/api/v1/tasks", TASK)
        assert r.status == 200, r.body
        return str(r.json()["runId"])

    try:
        first = time.time()
        ids = list(await asyncio.gather(*(post() for _ in range(tasks))))
        burst = tasks / (time.time() - first)
        latencies = []
        for _ in range(probes):
            t = time.perf_counter()
            ids.append(await post())
            latencies.append(time.perf_counter() - t)
            await asyncio.sleep(0.05)
        # Runs start in order: wait for each in turn, then read every completedAt.
        for run_id in ids:
            while True:
                body = (await client.request("GET", f"/api/v1/tasks/{run_id}/status")).json()
                if body["status"] in {"completed", "failed", "cancelled", "interrupted"}:
                    assert body["status"] == "completed", body
                    break
                await asyncio.sleep(0.2)
        completed = []
        for run_id in ids:
            task = (await client.request("GET", f"/api/v1/tasks/{run_id}")).json()
            completed.append(parse(task["completedAt"]))
    finally:
        client.close()
    return len(ids) / (max(completed) - first), burst, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--probes", type=int, default=100)
    parser.add_argument("--sandbox", choices=["bwrap", "none"], default="bwrap")
    args = parser.parse_args()
    configure_logging("warning")  # the sandbox started here for `true` alone logs as a server's
    print(f"{machine()} (at start); sandbox: {args.sandbox}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        alone = asyncio.run(true_alone(root / "alone", args.runs, args.sandbox))
        base = {"AGENTYARD_COMMANDS": json.dumps(COMMANDS), "AGENTYARD_LOG_LEVEL": "warning"}
        base["AGENTYARD_SANDBOX"] = args.sandbox
        one = {**base, "AGENTYARD_MAX_CONCURRENT_RUNS": "1"}
        server = ServerProcess(root / "one", server_env(root / "one", one)).start()
        try:
            through = asyncio.run(trivial_runs(server, args.runs))
        finally:
            server.stop()
        four = {**base, "AGENTYARD_MAX_CONCURRENT_RUNS": "4"}
        server = ServerProcess(root / "four", server_env(root / "four", four)).start()
        try:
            rate, burst, latencies = asyncio.run(drain(server, args.tasks, args.probes))
        finally:
            server.stop()
    s, a = statistics.median(through), statistics.median(alone)
    what = "through the sandbox wrapper" if args.sandbox == "bwrap" else "directly"
    print(f"trivial command task `true` ({args.runs} runs, one at a time):")
    print(f"  POST -> finish on its stream: median {s * 1000:.1f} ms")
    print(f"  `true` alone, {what}: median {a * 1000:.1f} ms")
    print(f"  the server adds per run: {(s - a) * 1000:.1f} ms")
    print(f"{args.tasks} trivial tasks POSTed at once, 4 slots:")
    print(f"  drained at {rate:.1f} tasks/s (first POST to last completedAt)")
    print(f"  the burst's POSTs answered at {burst:.0f}/s (32 connections)")
    print(
        f"  POST latency while draining ({len(latencies)} POSTs one at a time): "
        f"p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms"
    )
    print(f"{machine()} (at end)")


if __name__ == "__main__":
    main()
