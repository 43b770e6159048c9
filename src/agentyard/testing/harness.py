"""Real `agentyard serve` and `agentyard worker` processes on 127.0.0.1, and an SSE reader:
used by the end-to-end tests and the benchmarks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

API_KEY = "sk-ay-test-admin-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _ChildProcess:
    """Stopping an agentyard child process: SIGTERM and a grace period, or a signal now."""

    proc: subprocess.Popen[bytes] | None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class ServerProcess(_ChildProcess):
    data_dir: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    args: tuple[str, ...] = ()

    def start(self, timeout: float = 30.0) -> ServerProcess:
        self.log_path = self.data_dir / f"server-{time.monotonic_ns()}.log"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")  # noqa: SIM115 - handed to the child process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agentyard.cli", "serve", "--port", str(self.port), *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.logs()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not start:\n{self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def client(self, key: str = API_KEY) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )

    def cli(self, *args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "agentyard.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return out.stdout


@dataclass
class WorkerProcess(_ChildProcess):
    """An ``agentyard worker`` process."""

    env: dict[str, str]
    log_path: Path
    concurrency: int = 2
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        log = open(self.log_path, "wb")  # noqa: SIM115 - handed to the child process
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agentyard.cli",
                "worker",
                "--concurrency",
                str(self.concurrency),
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


def server_env(data_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ANTHROPIC_", "OPENAI_", "AGENTYARD_", "CLAUDE_", "CODEX_"))
    }
    env.update(
        {
            "AGENTYARD_DATA_DIR": str(data_dir),
            "AGENTYARD_API_KEY": API_KEY,
            "AGENTYARD_KEEPALIVE_SECONDS": "1",
            "AGENTYARD_QUEUE_POLL_SECONDS": "0.2",
            "AGENTYARD_LOG_LEVEL": "info",
            # A stop with a run still executing waits this long for it (the test's own
            # stop() then waits 20 s): short, unless a test asks for more.
            "AGENTYARD_SHUTDOWN_GRACE_SECONDS": "2",
        }
    )
    env.update(extra or {})
    return env


@contextmanager
def running_server(
    data_dir: Path, extra: Mapping[str, str] | None = None
) -> Iterator[ServerProcess]:
    """A server on ``data_dir`` with :func:`server_env` and ``extra``, stopped afterwards."""
    proc = ServerProcess(data_dir, server_env(data_dir, extra)).start()
    try:
        yield proc
    finally:
        proc.stop()


def wait_status(
    client: httpx.Client, run_id: str, statuses: set[str], timeout: float = 60.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = client.get(f"/api/v1/tasks/{run_id}/status").json()
        if body.get("status") in statuses:
            return body
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} never reached {statuses}; last: {body}")


@dataclass
class SseFrame:
    id: int | None
    data: dict[str, Any] | None
    comment: str | None = None


def sse_frames(response: httpx.Response) -> Iterator[SseFrame]:
    """Parse an SSE body as it arrives."""
    event_id: int | None = None
    data: list[str] = []
    for line in response.iter_lines():
        if line == "":
            if data:
                yield SseFrame(event_id, json.loads("\n".join(data)))
            event_id, data = None, []
        elif line.startswith(":"):
            yield SseFrame(None, None, comment=line[1:].strip())
        elif line.startswith("id:"):
            event_id = int(line[3:].strip())
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def read_stream(
    client: httpx.Client,
    path: str,
    headers: Mapping[str, str] | None = None,
    stop_after: int | None = None,
) -> tuple[int, list[SseFrame]]:
    """Read a stream to its end (or ``stop_after`` data frames); returns status and frames."""
    frames: list[SseFrame] = []
    with client.stream("GET", path, headers=dict(headers or {}), timeout=60) as response:
        if response.status_code != 200:
            return response.status_code, frames
        for frame in sse_frames(response):
            if frame.data is None:
                continue
            frames.append(frame)
            if stop_after is not None and len(frames) >= stop_after:
                break
    return 200, frames
