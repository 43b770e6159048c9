"""Scale-out figures, with the command runtime on PostgreSQL.

1. Event delivery latency: an agent prints timestamped lines on a worker; an SSE client on
   the API process (`serve --no-workers`) notes when each arrives (p50/p99).
2. Throughput: 500 short tasks through the API with 1 and with 2 worker processes.

Usage: python bench/scale_out.py [--tasks 500] [--dsn postgresql://postgres@127.0.0.1:5432]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg

from agentyard.testing.harness import ServerProcess, WorkerProcess, server_env, sse_frames

TICKER = (
    "import time\n"
    "for i in range(200):\n"
    "    print(repr(time.time()), flush=True)\n"
    "    time.sleep(0.01)\n"
)
COMMANDS = {
    "ticker": {"argv": ["python3", "-c", TICKER]},
    "noop": {"argv": ["true"]},
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def fresh_database(dsn: str) -> str:
    name = f"agentyard_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{dsn}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(dsn: str, name: str) -> None:
    with psycopg.connect(f"{dsn}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def cluster(dsn: str, data: Path, workers: int) -> tuple[ServerProcess, list[WorkerProcess], str]:
    db = fresh_database(dsn)
    env = server_env(
        data,
        {
            "AGENTYARD_DATABASE_URL": f"postgresql+psycopg://{dsn.split('://', 1)[1]}/{db}",
            "AGENTYARD_COMMANDS": json.dumps(COMMANDS),
            "AGENTYARD_LOG_LEVEL": "warning",
        },
    )
    api = ServerProcess(data, env, args=("--no-workers",)).start()
    procs = [
        WorkerProcess(env, data / f"worker-{i}.log", concurrency=4).start() for i in range(workers)
    ]
    return api, procs, db


def stop(api: ServerProcess, workers: list[WorkerProcess], dsn: str, db: str) -> None:
    for w in workers:
        w.stop()
    api.stop()
    drop_database(dsn, db)


def delivery_latency(api: ServerProcess) -> list[float]:
    latencies: list[float] = []
    with api.client() as c:
        for _ in range(3):
            run = c.post(
                "/api/v1/tasks", json={"prompt": "tick", "agent": "command", "model": "ticker"}
            ).json()
            with c.stream("GET", f"/api/v1/tasks/{run['runId']}/logs/stream", timeout=60) as r:
                for frame in sse_frames(r):
                    data = frame.data or {}
                    if data.get("type") == "text-delta":
                        latencies.append(time.time() - float(data["delta"]))
    return latencies


def throughput(api: ServerProcess, tasks: int) -> float:
    body = {"prompt": "noop", "agent": "command", "model": "noop"}
    started = time.monotonic()
    with api.client() as c, ThreadPoolExecutor(8) as pool:
        ids = list(
            pool.map(lambda _: c.post("/api/v1/tasks", json=body).json()["runId"], range(tasks))
        )
        # Runs start oldest first: poll the oldest unfinished one, so that polling does not
        # load the API more than the work does.
        pending = list(ids)
        while pending:
            status = c.get(f"/api/v1/tasks/{pending[0]}/status").json()["status"]
            if status in ("completed", "failed", "cancelled", "interrupted"):
                pending.pop(0)
            else:
                time.sleep(0.05)
    return tasks / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        api, workers, db = cluster(args.dsn, Path(tmp) / "lat", 1)
        try:
            lat = delivery_latency(api)
        finally:
            stop(api, workers, args.dsn, db)
        print(
            f"event delivery, agent output -> SSE client on the API process "
            f"(n={len(lat)}): p50 {percentile(lat, 0.5) * 1000:.1f} ms, "
            f"p99 {percentile(lat, 0.99) * 1000:.1f} ms, mean {statistics.mean(lat) * 1000:.1f} ms"
        )
        for n in (1, 2):
            api, workers, db = cluster(args.dsn, Path(tmp) / f"tp{n}", n)
            try:
                rate = throughput(api, args.tasks)
            finally:
                stop(api, workers, args.dsn, db)
            print(f"throughput, {args.tasks} short tasks, {n} worker(s) x 4: {rate:.1f} tasks/s")


if __name__ == "__main__":
    main()
