"""The native model bridge (bridge.c): built and cached safely, and, run as a plain program,
it does what bridge.py does: relays, limits, exit statuses, signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentyard.sandbox import native
from agentyard.sandbox.base import SandboxUnavailable
from agentyard.sandbox.bwrap import BwrapSandbox


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = native.build_bridge(tmp_path_factory.mktemp("scratch"), tmp_path_factory.mktemp("c"))
    assert built is not None, "the native bridge did not build (is a C compiler installed?)"
    return built


@pytest.fixture
def echo_socket(tmp_path: Path) -> Iterator[Path]:
    """A Unix socket that echoes whatever each connection sends (the proxy's stand-in)."""
    path = tmp_path / "echo.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(64)

    def echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield path
    listener.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_it_relays_concurrent_connections_both_ways(bridge: Path, echo_socket: Path) -> None:
    """Twenty connections at once, 2 MB each way, every byte back in order; the agent's
    first connection is never refused (the bridge listens before it starts)."""
    port = free_port()
    agent = (
        "import os, socket, threading\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "def one(i):\n"
        f"    c = socket.create_connection(('127.0.0.1', {port}))\n"
        "    data = os.urandom(2_000_000)\n"
        "    got = bytearray()\n"
        "    def read():\n"
        "        while chunk := c.recv(65536): got.extend(chunk)\n"
        "    t = threading.Thread(target=read); t.start()\n"
        "    c.sendall(data); c.shutdown(socket.SHUT_WR); t.join(); c.close()\n"
        "    return bytes(got) == data\n"
        "with ThreadPoolExecutor(20) as pool: results = list(pool.map(one, range(20)))\n"
        "print(sum(results))\n"
    )
    out = subprocess.run(
        [str(bridge), "--port", str(port), "--socket", str(echo_socket), "--",
         sys.executable, "-c", agent],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == "20"


def test_a_connection_without_upstream_is_closed(bridge: Path, tmp_path: Path) -> None:
    """With the proxy's socket gone, a connection is accepted and closed (no hang)."""
    port = free_port()
    agent = (
        "import socket\n"
        f"c = socket.create_connection(('127.0.0.1', {port}))\n"
        "c.sendall(b'GET / HTTP/1.1\\r\\n\\r\\n')\n"
        "try:\n"
        "    print('closed' if c.recv(10) == b'' else 'answered')\n"
        "except ConnectionResetError:\n"
        "    print('closed')\n"
    )
    out = subprocess.run(
        [str(bridge), "--port", str(port), "--socket", str(tmp_path / "absent.sock"), "--",
         sys.executable, "-c", agent],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == "closed"


@pytest.mark.parametrize(("script", "status"), [("exit 0", 0), ("exit 3", 3), ("kill -9 $$", 137)])
def test_it_exits_with_the_agents_status(bridge: Path, script: str, status: int) -> None:
    assert subprocess.run([str(bridge), "--", "sh", "-c", script], timeout=30).returncode == status


def test_limits_apply_to_the_agent(bridge: Path) -> None:
    out = subprocess.run(
        [str(bridge), "--rlimit", "nofile=64", "--rlimit", "fsize=4096", "--rlimit", "core=0",
         "--", "sh", "-c", "ulimit -n; ulimit -f; ulimit -c"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    # ulimit -f counts 512-byte blocks
    assert out.stdout.split() == ["64", "8", "0"]


def test_a_missing_agent_is_reported(bridge: Path) -> None:
    out = subprocess.run(
        [str(bridge), "--", "no-such-agent-binary"], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 127
    assert "cannot start 'no-such-agent-binary'" in out.stderr


@pytest.mark.parametrize(
    "argv",
    [["--bogus", "1", "--", "true"], ["--port", "1"], ["--rlimit", "stack=1", "--", "true"],
     ["--port", "x", "--", "true"], ["--rlimit", "nofile=-1", "--", "true"]],
)  # fmt: skip
def test_a_bad_command_line_is_refused(bridge: Path, argv: list[str]) -> None:
    out = subprocess.run([str(bridge), *argv], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert out.stderr.startswith("agentyard bridge: ")


def test_termination_is_passed_on_to_the_agent(bridge: Path, tmp_path: Path) -> None:
    """SIGTERM to the bridge reaches the agent, which may clean up; the bridge then exits
    with the agent's status."""
    marker = tmp_path / "cleaned"
    proc = subprocess.Popen(
        [str(bridge), "--", "sh", "-c", f"trap 'touch {marker}; exit 42' TERM; "
         "echo ready; while :; do sleep 0.05; done"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 42
    finally:
        proc.kill()
    assert marker.exists()


def test_it_is_built_once_and_cached(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = native.build_bridge(tmp_path / "scratch", cache)
    assert first is not None and first.parent == cache
    built_at = first.stat().st_mtime_ns
    time.sleep(0.01)
    assert native.build_bridge(tmp_path / "scratch", cache) == first
    assert first.stat().st_mtime_ns == built_at


def test_a_cache_others_may_write_is_not_used(tmp_path: Path) -> None:
    """A cache directory open to other users (who could swap the binary that runs in every
    sandbox) is passed over: the bridge is built in the private scratch directory."""
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    scratch = tmp_path / "scratch"
    scratch.mkdir(mode=0o700)
    built = native.build_bridge(scratch, shared / "agentyard")
    assert built is not None and built.parent == scratch
    # And a binary someone else could have written is never taken from the cache.
    cache = tmp_path / "cache"
    cached = native.build_bridge(scratch, cache)
    assert cached is not None
    os.chmod(cached, 0o777)
    rebuilt = native.build_bridge(scratch, cache)
    assert rebuilt == cached and not rebuilt.stat().st_mode & 0o022


def test_without_a_compiler_there_is_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native, "find_compiler", lambda: None)
    assert native.build_bridge(tmp_path, tmp_path / "cache") is None


async def test_the_sandbox_falls_back_or_refuses_without_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``auto`` starts the Python bridge where the native one cannot be built; ``native``
    refuses to start."""
    monkeypatch.setattr(native, "find_compiler", lambda: None)
    sandbox = BwrapSandbox(data_dir=tmp_path / "auto")
    await sandbox.start()
    try:
        assert sandbox.describe()["bridge"] == "python"
    finally:
        await sandbox.stop()
    strict = BwrapSandbox(data_dir=tmp_path / "native", bridge="native")
    with pytest.raises(SandboxUnavailable, match="native model bridge"):
        await strict.start()
    assert not strict.runtime_dir.exists()
