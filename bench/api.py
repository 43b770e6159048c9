"""The server's per-request, per-subscriber and idle-memory cost, side by side.

Prints, with the machine's core count and load average:
1. GET /api/v1/tasks/{id}/status req/s (a database API key, as a user's would be), of a run
   still executing (quiet, and printing 50 lines/s: each line is a commit, after which the
   run's row is read again) and of a finished one (whose body the server remembers), each
   divided by the req/s of a bare Starlette JSON endpoint on the same uvicorn settings (one
   worker, the same loop and HTTP implementation), all loaded by ``wrk -t2 -c32 -d10s`` when
   wrk is installed, else by an async httpx client with 32 connections (a note says so);
2. one command run printing 50 timestamped lines/s for ~10 s, watched by 50 and then 500 SSE
   subscribers: delivery latency p50/p99 (receive time minus the line's own timestamp; the
   agent runs in the sandbox on the same machine's clock) and lines lost or duplicated (every
   subscriber must see every line exactly once), with the client's own CPU use (near 100 %
   of a core, the client would be the bottleneck);
3. the server process's RSS after start-up and one trivial task, against the 120 MB goal.

Usage: python bench/api.py [--seconds 10] [--subscribers 50,500] [--sandbox bwrap|none]

Before and after the per-request, per-subscriber and idle-memory work, in alternating runs
on the project's 2-core machine with other work on it (load average 2.3-5.0; the latencies
move with it, the CPU per line less so):
- status req/s vs bare Starlette: 384, 361, 297 -> 1,548, 1,175, 1,961 (ratio 0.03-0.05 ->
  0.14-0.28; the bare side itself ranged 5,783-12,361 across those runs);
- 500 subscribers (load 4.5): server CPU 45 -> 26 us per line delivered; latency p50
  109 -> 103 ms, p99 241 -> 225 ms (p99 46 ms in an after-run at load 1.0); 0 lost, 0 dup;
- 50 subscribers (load 2.5): server CPU 176, 133 -> 109, 122 us per line; p99 22.7, 22.8 ->
  11.6, 35.0 ms (noise, both ways);
- idle RSS: 164 -> 116 MB.

Then (point reads compiled once on the bare sqlite3 connection, a narrow status read answered
outside the framework's middleware), alternating runs on a quiet machine (load 1.5-3):
status 2,799 -> 4,481 req/s against a bare 13,782-13,836 (ratio 0.20 -> 0.32; 5,900-7,600 in
runs of the status row alone, 0.37-0.47); 50 subscribers p99 10.7 -> 8.1 ms; 500 subscribers
p99 49.7 -> 58.1 ms (noise) and 40 -> 33 us of server CPU per line; RSS 116 -> 115 MB.

Then (SQLite on the event loop, ended runs' status bodies remembered), after the commit
before on the same machine (load 1.6-3.4): status 2,778 req/s (a finished run) against a bare
7,364 (0.38) -> a running run 3,753 and a finished one 5,488 against a bare 8,836 (0.42,
0.62); 3,618 and 6,789 against 10,545 (0.34, 0.64) in another run. 50 subscribers p99 9.6 ->
9.5 ms; 500 subscribers p99 85.0 -> 103.6 ms at load 2-3 (27.6 ms in a quiet run), 43 -> 41
us of server CPU per line; RSS 114 -> 114 MB.

Then (a running run's row remembered until SQLite's data_version moves, its body until its
progress does), alternating with the commit before on a quicker machine (load 1-1.6):
a running run 6,131, 5,972 -> 8,332 req/s against bare 14,160-15,027 (0.43, 0.40 -> 0.58);
printing 50 lines/s 6,180, 5,588 -> 8,443 (0.44, 0.37 -> 0.59); finished 0.67, 0.65 -> 0.72.
At the end (load 3-4): 0.54 running, 0.52 printing, 0.72 finished; 50 subscribers p99
9.4 ms, 500 p99 29.1 ms; RSS 116 MB.

Then, on a third machine of the kind: a new database built from the declared schema and a
current one left alone, so that a server no longer loads Alembic at every start: RSS 117 ->
107, 105 MB; status 0.58, 0.57, 0.69 -> 0.58-0.59, 0.57-0.58, 0.67-0.71; 50 subscribers p99
5.1 -> 4.9, 5.3 ms; 500 p99 22.0 -> 18.3, 18.1 ms (load 2.5-3.8).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from agentyard.testing.harness import ServerProcess, free_port, server_env, wait_status
from figures import machine, percentile
from lean import Connection

LINES_PER_SECOND = 50
GOAL_RSS_MB = 120


def ticker(lines: int, delay: float) -> str:
    """A command printing ``L<n> <unix time>`` lines at 50/s, after ``delay`` seconds."""
    return (
        "import time\n"
        f"time.sleep({delay})\n"
        f"start = time.time()\n"
        f"for i in range({lines}):\n"
        f"    time.sleep(max(0.0, start + i / {LINES_PER_SECOND} - time.time()))\n"
        "    print(f'L{i} {time.time():.6f}', flush=True)\n"
    )


# -- 1. status vs bare Starlette -----------------------------------------------------------


def serve_bare(port: int) -> None:
    """A bare Starlette JSON endpoint on uvicorn as ``agentyard serve`` configures it."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    body = {
        "runId": "r_0123456789abcdef",
        "status": "completed",
        "progress": 1.0,
        "error": None,
        "statusDetail": "Completed",
        "startedAt": "2026-01-01T00:00:00.000Z",
        "completedAt": "2026-01-01T00:00:01.000Z",
    }

    async def status(request: Request) -> JSONResponse:
        return JSONResponse(body)

    app = Starlette(routes=[Route("/status", status)])
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    uvicorn.Server(config).run()


def wrk(url: str, key: str, seconds: int) -> float:
    out = subprocess.run(
        ["wrk", "-t2", "-c32", f"-d{seconds}s", "-H", f"Authorization: Bearer {key}", url],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"{url}: {errors.group(1)} error responses:\n{out}")
    found = re.search(r"Requests/sec:\s*([\d.]+)", out)
    if found is None:
        raise RuntimeError(f"no Requests/sec in wrk's output:\n{out}")
    return float(found.group(1))


async def httpx_load(url: str, key: str, seconds: int) -> float:
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    headers = {"Authorization": f"Bearer {key}"}
    done = 0
    async with httpx.AsyncClient(limits=limits, headers=headers, timeout=30) as client:
        deadline = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                response = await client.get(url)
                response.raise_for_status()
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(32)))
        return done / (time.monotonic() - started)


def load(url: str, key: str, seconds: int) -> float:
    if shutil.which("wrk"):
        return wrk(url, key, seconds)
    return asyncio.run(httpx_load(url, key, seconds))


def status_row(server: ServerProcess, key: str, runs: dict[str, str], seconds: int) -> None:
    """``runs``: what each run is (``a running run``, ...) -> its id."""
    port = free_port()
    bare = subprocess.Popen(
        [sys.executable, __file__, "--serve-bare", str(port)], start_new_session=True
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/status", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        ours = {}
        for what, run_id in runs.items():
            status_url = f"{server.url}/api/v1/tasks/{run_id}/status"
            load(status_url, key, 2)  # warm-up
            ours[what] = load(status_url, key, seconds)
        load(f"http://127.0.0.1:{port}/status", key, 2)
        theirs = load(f"http://127.0.0.1:{port}/status", key, seconds)
    finally:
        bare.terminate()
        bare.wait(timeout=10)
    how = "wrk -t2 -c32" if shutil.which("wrk") else "httpx, 32 connections (wrk not installed)"
    print(f"GET /tasks/{{id}}/status vs bare Starlette ({how}, {seconds} s each, {machine()}):")
    print(f"  bare Starlette {theirs:,.0f} req/s")
    for what, rate in ours.items():
        print(f"  status of {what} {rate:,.0f} req/s, ratio {rate / theirs:.2f}")


# -- 2. SSE fan-out ------------------------------------------------------------------------

_LINE = re.compile(rb"L(\d+) (\d+\.\d+)")


class Subscriber:
    """One SSE client on a lean connection: notes each line's latency as its chunk arrives."""

    def __init__(self) -> None:
        self.seen: dict[int, int] = {}
        self.latencies: list[float] = []
        self.connected = asyncio.Event()
        self.finished = False

    async def run(self, host: str, port: int, path: str, key: str) -> None:
        connection = Connection(host, port, key)
        await connection.open_stream(path)
        self.connected.set()
        pending = b""
        try:
            async for chunk in connection.chunks():
                now = time.time()
                pending += chunk
                *frames, pending = pending.split(b"\n\n")
                for item in frames:
                    for number, stamp in _LINE.findall(item):
                        n = int(number)
                        self.seen[n] = self.seen.get(n, 0) + 1
                        self.latencies.append(now - float(stamp))
                    if b'"type":"finish"' in item:
                        self.finished = True
        finally:
            connection.close()


async def fan_out(server: ServerProcess, key: str, subscribers: int, seconds: int) -> None:
    lines = seconds * LINES_PER_SECOND
    client = httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    async with client:
        # Subscribers connect during the command's delay, so that every line is live.
        delay = 2 + subscribers / 100
        response = await client.post(
            "/api/v1/tasks",
            json={"prompt": "tick", "agent": "command", "model": f"ticker-{subscribers}"},
        )
        response.raise_for_status()
        run_id = response.json()["runId"]
        subs = [Subscriber() for _ in range(subscribers)]
        usage_before = resource.getrusage(resource.RUSAGE_SELF)
        assert server.proc is not None
        server_cpu = psutil.Process(server.proc.pid)
        server_before = sum(server_cpu.cpu_times()[:2])
        wall_before = time.monotonic()
        path = f"/api/v1/tasks/{run_id}/logs/stream"
        tasks = [asyncio.create_task(s.run("127.0.0.1", server.port, path, key)) for s in subs]
        connect_started = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*(s.connected.wait() for s in subs)), 60)
        connected_in = time.monotonic() - connect_started
        await asyncio.wait_for(asyncio.gather(*tasks), seconds + delay + 120)
        usage_after = resource.getrusage(resource.RUSAGE_SELF)
        server_used = sum(server_cpu.cpu_times()[:2]) - server_before
        wall = time.monotonic() - wall_before
    cpu = (usage_after.ru_utime + usage_after.ru_stime) - (
        usage_before.ru_utime + usage_before.ru_stime
    )
    latencies = [x for s in subs for x in s.latencies]
    lost = sum(1 for s in subs for n in range(lines) if n not in s.seen)
    duplicated = sum(c - 1 for s in subs for c in s.seen.values() if c > 1)
    unfinished = sum(1 for s in subs if not s.finished)
    late = " (after the first line: raise the delay)" if connected_in > delay else ""
    print(
        f"SSE fan-out, {subscribers} subscribers, {LINES_PER_SECOND} lines/s for {seconds} s "
        f"({machine()}):"
    )
    print(
        f"  delivery latency p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms, max "
        f"{max(latencies) * 1000:.1f} ms; lost {lost}, duplicated {duplicated}, "
        f"streams without finish {unfinished}"
    )
    print(
        f"  all connected in {connected_in:.2f} s{late}; client CPU "
        f"{cpu / wall * 100:.0f} % of one core over {wall:.1f} s; server CPU "
        f"{server_used:.1f} s ({server_used / max(1, len(latencies)) * 1e6:.0f} us per line "
        f"delivered); mean {statistics.mean(latencies) * 1000:.1f} ms"
    )


# -- 3. RSS --------------------------------------------------------------------------------


def rss_row(server: ServerProcess) -> None:
    assert server.proc is not None
    rss = psutil.Process(server.proc.pid).memory_info().rss / 1024**2
    print(f"Server RSS idle (after start-up and one trivial task): {rss:.0f} MB")
    print(f"  goal < {GOAL_RSS_MB} MB, ratio {rss / GOAL_RSS_MB:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--subscribers", default="50,500")
    parser.add_argument("--sandbox", choices=["bwrap", "none"], default="bwrap")
    parser.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return
    counts = [int(n) for n in args.subscribers.split(",") if n.strip()]
    commands = {
        "noop": {"argv": ["true"]},
        "hold": {"argv": ["sleep", "600"]},
        "printer": {"argv": ["python3", "-c", ticker(600 * LINES_PER_SECOND, 0)]},
    }
    for n in counts:
        script = ticker(args.seconds * LINES_PER_SECOND, 2 + n / 100)
        commands[f"ticker-{n}"] = {"argv": ["python3", "-c", script]}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = server_env(
            root / "yard",
            {
                "AGENTYARD_LOG_LEVEL": "warning",
                "AGENTYARD_SANDBOX": args.sandbox,
                "AGENTYARD_COMMANDS": json.dumps(commands),
                "AGENTYARD_KEEPALIVE_SECONDS": "15",
            },
        )
        server = ServerProcess(root / "yard", env).start()
        try:
            # A key in the database, as every user but the operator has.
            key = server.cli("keys", "create", "--name", "bench", "--user", "bench").strip()
            with server.client(key) as client:
                run = client.post(
                    "/api/v1/tasks", json={"prompt": "x", "agent": "command", "model": "noop"}
                )
                run.raise_for_status()
                run_id = run.json()["runId"]
                wait_status(client, run_id, {"completed"})
            time.sleep(1)
            print(f"sandbox: {args.sandbox}")
            rss_row(server)
            with server.client(key) as client:
                held = {}
                for model in ("hold", "printer"):
                    task = {"prompt": "x", "agent": "command", "model": model}
                    held[model] = client.post("/api/v1/tasks", json=task).json()["runId"]
                for run in held.values():
                    wait_status(client, run, {"running"})
                try:
                    runs = {
                        "a running run": held["hold"],
                        f"a running run printing {LINES_PER_SECOND} lines/s": held["printer"],
                        "a finished run": run_id,
                    }
                    status_row(server, key, runs, args.seconds)
                finally:
                    for run in held.values():
                        client.patch(f"/api/v1/tasks/{run}", json={"action": "cancel"})
                        wait_status(client, run, {"cancelled"})
            for n in counts:
                asyncio.run(fan_out(server, key, n, args.seconds))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
