"""The sandbox, tried as a hostile agent would: every escape attempt fails.

The agent is a shell script (the command runtime, the prompt is the script) run by a real
server with the bubblewrap sandbox; each test prints what the attempt got and asserts on it,
and checks the host afterwards. The same attempts through the Claude CLI's Bash tool are in
``test_sandbox_claude.py``.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agentyard.testing.harness import ServerProcess, running_server, server_env, wait_status
from agentyard.testing.scripted_model import ScriptedModelServer

REAL_ANTHROPIC_KEY = "sk-ant-real-provider-key-0123456789"
REAL_OPENAI_KEY = "sk-openai-real-provider-key-9876543210"
FILE_LIMIT = 1_048_576
PROCESS_LIMIT = 64

COMMANDS = {"sh": {"argv": ["sh", "-c", "{prompt}"], "timeout_seconds": 60}}


@pytest.fixture(scope="module")
def model() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer({"scenarios": [{"turns": [{"text": "proxied answer"}]}]}) as server:
        yield server


@pytest.fixture(scope="module", params=["native", "python"])
def server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    model: ScriptedModelServer,
) -> Iterator[ServerProcess]:
    """A server whose sandboxes start with the native model bridge, then one whose start
    with the Python bridge (every attempt below is made against both)."""
    with running_server(
        tmp_path_factory.mktemp("yard"),
        {
            "AGENTYARD_SANDBOX": "bwrap",
            "AGENTYARD_SANDBOX_BRIDGE": request.param,
            "AGENTYARD_COMMANDS": json.dumps(COMMANDS),
            "AGENTYARD_MAX_CONCURRENT_RUNS": "3",
            "AGENTYARD_SANDBOX_MAX_FILE_BYTES": str(FILE_LIMIT),
            "AGENTYARD_SANDBOX_MAX_PROCESSES": str(PROCESS_LIMIT),
            "ANTHROPIC_API_KEY": REAL_ANTHROPIC_KEY,
            "ANTHROPIC_BASE_URL": model.url,
            "OPENAI_API_KEY": REAL_OPENAI_KEY,
            "OPENAI_BASE_URL": model.url + "/v1",
        },
    ) as proc:
        yield proc


def run_script(client: httpx.Client, script: str, timeout: float = 90) -> dict[str, object]:
    """Run ``script`` as the agent; the finished task (its output is the assistant text)."""
    r = client.post("/api/v1/tasks", json={"prompt": script, "agent": "command", "model": "sh"})
    assert r.status_code == 200, r.text
    run_id = r.json()["runId"]
    wait_status(client, run_id, {"completed", "failed", "cancelled", "interrupted"}, timeout)
    task: dict[str, object] = client.get(f"/api/v1/tasks/{run_id}").json()
    return task


def output(task: dict[str, object]) -> str:
    messages = task["messages"]
    assert isinstance(messages, list)
    return "".join(
        part.get("text", "") for m in messages[1:] for part in m["parts"] if part["type"] == "text"
    )


def test_sandbox_is_reported(client: httpx.Client, server: ServerProcess) -> None:
    """/agents and /readyz say which sandbox confines the agents, and which bridge."""
    sandbox = client.get("/api/v1/agents").json()["sandbox"]
    assert sandbox["sandbox"] == "bwrap"
    assert sandbox["bridge"] == server.env["AGENTYARD_SANDBOX_BRIDGE"]
    assert client.get("/readyz").json()["sandbox"] == "bwrap"


def test_the_data_directory_is_out_of_reach(client: httpx.Client, server: ServerProcess) -> None:
    """admin.key, secret.key and the database cannot be read, listed or written."""
    data = server.data_dir
    assert (data / "admin.key").exists() and (data / "agentyard.db").exists()
    script = "; ".join(
        f"cat {data / name} && echo LEAK-{name}"
        for name in ("admin.key", "secret.key", "agentyard.db")
    )
    # What the agent may see of the data directory: the mount points of its own workspace
    # and state, in the sandbox's own private tmpfs (a write there stays there).
    script += f"; ls -a {data} | sed s/^/listed:/; touch {data}/planted; true"
    task = run_script(client, script)
    text = "".join(line for line in output(task).splitlines() if "No such file" not in line)
    assert task["status"] == "completed", task
    assert "LEAK" not in text, text
    assert "admin.key" not in text and "agentyard.db" not in text and "secret.key" not in text
    assert not (data / "planted").exists()
    secret = (data / "admin.key").read_text().strip()
    assert secret not in text


def test_another_chats_workspace_is_invisible(client: httpx.Client, server: ServerProcess) -> None:
    """One chat's agent cannot see another chat's workspace, nor the list of workspaces."""
    first = run_script(client, "echo private-notes > notes.txt; pwd")
    first_ws = output(first).strip().splitlines()[-1]
    assert (Path(first_ws) / "notes.txt").read_text() == "private-notes\n"
    task = run_script(
        client,
        f"cat {first_ws}/notes.txt; ls {Path(first_ws).parent}; "
        f"ls {server.data_dir / 'runtime-state'}",
    )
    text = output(task)
    assert "private-notes" not in text
    assert Path(first_ws).name not in text.replace(first_ws, "")


def test_host_processes_are_invisible_and_unsignalable(
    client: httpx.Client, server: ServerProcess
) -> None:
    """/proc shows only the sandbox's own processes: the server's environ cannot be read and
    the server cannot be signalled."""
    assert server.proc is not None
    pid = server.proc.pid
    task = run_script(
        client,
        f"cat /proc/{pid}/environ && echo LEAK-environ; kill -STOP {pid} && echo LEAK-signal; "
        "ls /proc | grep -E '^[0-9]+$' | wc -l",
    )
    text = output(task)
    assert "LEAK" not in text, text
    assert int(text.strip().splitlines()[-1]) < 10, text
    assert server.proc.poll() is None
    assert client.get("/healthz").status_code == 200


def test_no_provider_key_in_the_sandbox(client: httpx.Client) -> None:
    """No process in the sandbox holds a provider's key; the agent gets a per-run token."""
    task = run_script(
        client,
        "env; cat /proc/*/environ | tr '\\0' '\\n'; echo TOKEN=$ANTHROPIC_API_KEY",
    )
    text = output(task)
    assert REAL_ANTHROPIC_KEY not in text and REAL_OPENAI_KEY not in text
    assert "TOKEN=ay-run-" in text
    assert "AGENTYARD_SECRET" not in text and "AGENTYARD_DATABASE" not in text


def test_loopback_ports_are_unreachable(client: httpx.Client, server: ServerProcess) -> None:
    """The API port, PostgreSQL and any other loopback port are closed to the agent."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    other = listener.getsockname()[1]
    probe = (
        "import socket\n"
        f"for port in ({server.port}, 5432, {other}):\n"
        "    s = socket.socket()\n"
        "    s.settimeout(3)\n"
        "    try:\n"
        "        s.connect(('127.0.0.1', port)); print('OPEN', port)\n"
        "    except OSError as e:\n"
        "        print('closed', port, e.errno)\n"
    )
    try:
        task = run_script(client, f"python3 -c {shlex.quote(probe)}")
    finally:
        listener.close()
    text = output(task)
    assert "OPEN" not in text, task
    assert text.count("closed") == 3, task


def test_system_directories_and_the_venv_are_read_only(client: httpx.Client) -> None:
    """Writes to /etc, /usr and the server's virtualenv fail."""
    venv = Path(sys.prefix)  # the virtualenv running these tests and the server
    site = next(venv.glob("lib/python*/site-packages"))
    targets = ["/etc/planted", "/usr/planted", str(site / "planted.pth"), str(venv / "planted")]
    task = run_script(client, "; ".join(f"touch {t} && echo LEAK-{t}" for t in targets) + "; true")
    assert "LEAK" not in output(task)
    for target in targets:
        assert not Path(target).exists()


def test_etc_holds_only_what_others_may_read(client: httpx.Client) -> None:
    """The sandbox's /etc is its own: the host's shadow file and private key directory are
    absent (even for a server running as root, whose files the agent's uid would own), a
    synthetic passwd names no host user, and what agents need (CA certificates, the linker's
    cache) is there."""
    script = (
        "cat /etc/shadow && echo LEAK-shadow; ls /etc/ssl/private && echo LEAK-private; "
        "ls /etc/sudoers.d && echo LEAK-sudoers; test -s /etc/ld.so.cache && echo HAS-ldcache; "
        "test -d /etc/ssl/certs && echo HAS-certs; "
        "cut -d: -f1 /etc/passwd | tr '\\n' ' '; echo"
    )
    text = output(run_script(client, script))
    assert "LEAK" not in text, text
    if Path("/etc/ld.so.cache").exists():
        assert "HAS-ldcache" in text, text
    if Path("/etc/ssl/certs").is_dir():
        assert "HAS-certs" in text, text
    assert "root agent nobody" in text, text


def _sleepers(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline:
                found.append(int(entry))
    return found


def test_no_process_outlives_its_run(client: httpx.Client) -> None:
    """A daemonised process (setsid, double fork, marker removed) dies with its run."""
    task = run_script(
        client,
        "setsid sleep 3141 & (env -u AGENTYARD_RUN_ID sh -c 'sleep 3142 &' &); "
        "nohup sleep 3143 >/dev/null 2>&1 & sleep 0.3; echo spawned",
    )
    assert task["status"] == "completed" and "spawned" in output(task)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _sleepers("314"):
        time.sleep(0.1)
    assert [p for m in ("3141", "3142", "3143") for p in _sleepers(f"sleep\0{m}")] == []


def test_file_size_limit(client: httpx.Client) -> None:
    """A file cannot grow past the sandbox's file-size limit."""
    task = run_script(client, "pwd; dd if=/dev/zero of=big.bin bs=65536 count=64 2>/dev/null")
    workspace = Path(output(task).strip().splitlines()[0])
    assert (workspace / "big.bin").stat().st_size <= FILE_LIMIT


def test_fork_bomb_is_contained(client: httpx.Client) -> None:
    """A fork bomb hits the process limit, the run ends, and the server still answers."""
    bomb = (
        "import os, time\n"
        "n = 0\n"
        "try:\n"
        "    while n < 5000:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(60); os._exit(0)\n"
        "        n += 1\n"
        "except OSError as e:\n"
        "    print('fork failed after', n, e.errno)\n"
        "print('children', n)\n"
    )
    started = time.monotonic()
    task = run_script(client, f"python3 -c {shlex.quote(bomb)}")
    text = output(task)
    assert "fork failed after" in text, text
    children = int(text.strip().splitlines()[-1].split()[-1])
    assert children < PROCESS_LIMIT
    assert time.monotonic() - started < 60
    assert client.get("/healthz").status_code == 200
    assert _sleepers("time.sleep(60)") == []


def test_model_proxy_swaps_the_token_for_the_key(
    client: httpx.Client, model: ScriptedModelServer
) -> None:
    """A confined command reaches its model only through the proxy: the agent sends its run
    token, the provider receives the real key; after the run the token is refused."""
    call = (
        'curl -s -o /dev/null -w "%{http_code}\\n" "$ANTHROPIC_BASE_URL/v1/messages" '
        '-H "x-api-key: $ANTHROPIC_API_KEY" -H "anthropic-version: 2023-06-01" '
        '-H "content-type: application/json" '
        '-d \'{"model": "claude-sonnet-4-5", "max_tokens": 10, '
        '"messages": [{"role": "user", "content": "hi"}]}\''
    )
    before = len(model.requests)
    task = run_script(client, f"echo $ANTHROPIC_API_KEY > token.txt; {call}; pwd")
    lines = output(task).strip().splitlines()
    assert lines[0] == "200", lines
    received = model.requests[before:]
    assert [r["headers"].get("x-api-key") for r in received] == [REAL_ANTHROPIC_KEY]
    # The token of an ended run: handed to a new run (same chat), it is refused.
    token = (Path(lines[-1]) / "token.txt").read_text().strip()
    assert token.startswith("ay-run-")
    task = run_script(client, call.replace("$ANTHROPIC_API_KEY", token))
    assert output(task).strip() == "401"
    assert len(model.requests) == before + 1


def test_git_works_inside_the_workspace(client: httpx.Client) -> None:
    """The agent's own git works in its workspace (status, commit, log), as its author."""
    task = run_script(
        client,
        "git status --porcelain && echo change > work.txt && git add work.txt && "
        "git commit -q -m 'agent commit' && git log -1 --format='%an %s'",
    )
    assert task["status"] == "completed", task
    assert output(task).strip().splitlines()[-1] == "Agentyard agent commit"


@pytest.fixture
def site() -> Iterator[int]:
    """A plain HTTP server on loopback standing in for an allow-listed package registry."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"registry says hi"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.2", 0), Handler)
    import threading

    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_allowlist_network_reaches_listed_hosts_only(
    tmp_path: Path, site: int, model: ScriptedModelServer
) -> None:
    """With AGENTYARD_SANDBOX_NETWORK=allowlist the agent's HTTPS_PROXY tunnels to the listed
    host (allowed to be private here) and to nothing else."""
    env = server_env(
        tmp_path,
        {
            "AGENTYARD_SANDBOX": "bwrap",
            "AGENTYARD_SANDBOX_NETWORK": "allowlist",
            "AGENTYARD_SANDBOX_ALLOWED_HOSTS": json.dumps([f"127.0.0.2:{site}", "127.0.0.3"]),
            "AGENTYARD_SANDBOX_PRIVATE_HOSTS": json.dumps(["127.0.0.2"]),
            "AGENTYARD_COMMANDS": json.dumps(COMMANDS),
        },
    )
    proc = ServerProcess(tmp_path, env).start()
    try:
        with proc.client() as c:
            assert c.get("/api/v1/agents").json()["sandbox"]["network"] == "allowlist"
            task = run_script(
                c,
                f"curl -s -m 5 -p http://127.0.0.2:{site}/; echo; "
                f"curl -s -m 5 -p http://127.0.0.3:{site}/ || echo refused-private; "
                f"curl -s -m 5 -p http://127.0.0.2:{proc.port}/healthz || echo refused-port; "
                f"curl -s -m 5 --noproxy '*' http://127.0.0.2:{site}/ || echo refused-direct",
            )
            lines = output(task).strip().splitlines()
            assert lines[0] == "registry says hi", lines
            assert "refused-private" in lines and "refused-port" in lines
            assert "refused-direct" in lines
    finally:
        proc.stop()


def test_agents_die_with_the_server(tmp_path: Path) -> None:
    """kill -9 of the server takes its sandboxes, and every process in them, along."""
    commands = {"sleepy": {"argv": ["sh", "-c", "sleep 2718 & sleep 2719"]}}
    env = server_env(
        tmp_path, {"AGENTYARD_SANDBOX": "bwrap", "AGENTYARD_COMMANDS": json.dumps(commands)}
    )
    proc = ServerProcess(tmp_path, env).start()
    try:
        with proc.client() as c:
            r = c.post("/api/v1/tasks", json={"prompt": "x", "agent": "command", "model": "sleepy"})
            wait_status(c, r.json()["runId"], {"running"})
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and len(_sleepers("sleep\0" + "271")) < 2:
                time.sleep(0.05)
            assert len(_sleepers("sleep\0" + "271")) == 2
        proc.kill()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and _sleepers("sleep\0" + "271"):
            time.sleep(0.05)
        assert _sleepers("sleep\0" + "271") == []
    finally:
        proc.stop()


def test_no_sandbox_is_never_silent(tmp_path: Path) -> None:
    """AGENTYARD_SANDBOX=none runs agents unconfined, and says so: a start-up warning, and
    /agents and /readyz report it."""
    env = server_env(
        tmp_path, {"AGENTYARD_SANDBOX": "none", "AGENTYARD_COMMANDS": json.dumps(COMMANDS)}
    )
    proc = ServerProcess(tmp_path, env).start()
    try:
        with proc.client() as c:
            assert c.get("/api/v1/agents").json()["sandbox"]["sandbox"] == "none"
            assert c.get("/readyz").json()["sandbox"] == "none"
            task = run_script(c, "id -u")
            assert output(task).strip() == str(os.getuid())
    finally:
        proc.stop()
    assert "agents run unconfined" in proc.logs()
