"""The ``agentyard`` CLI as a user runs it: a subprocess against a real server (the real
Claude CLI and codex against the scripted model). stdout is a pipe here, so every command
prints plain text: no colours, no status line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from agentyard.client import Client, Unauthorized
from agentyard.testing.faults import TcpProxy
from agentyard.testing.harness import API_KEY
from clientkit import TOKEN, Yard, yard  # noqa: F401 - the module's server fixture

ANSI = "\x1b["


def cli_env(yard: Yard, url: str | None = None) -> dict[str, str]:  # noqa: F811
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTYARD_")}
    env.update(
        {
            "AGENTYARD_URL": url or yard.url,
            "AGENTYARD_KEY": API_KEY,
            "AGENTYARD_DATA_DIR": str(yard.server.data_dir),
        }
    )
    return env


def cli(
    yard: Yard,  # noqa: F811
    *args: str,
    stdin: str | None = None,
    url: str | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentyard.cli", *args],
        env=cli_env(yard, url),
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=120,
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def api(yard: Yard) -> Client:  # noqa: F811
    return Client(yard.url, API_KEY)


def test_run_streams_the_agents_text_and_tool_calls_and_exits_0(yard: Yard) -> None:  # noqa: F811
    done = cli(yard, "run", "write hello from the cli")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert ANSI not in out
    lines = out.splitlines()
    assert "I'll write the file." in lines and "Wrote hello.txt." in lines
    tool = next(line for line in lines if line.startswith("⏺ Write("))
    assert "hello.txt" in tool
    assert any(line.startswith("  ⎿ ") for line in lines)
    assert any(line.startswith("completed in ") and "$" in line for line in lines)
    assert "1 file changed, +1 -0" in lines


def test_run_json_prints_one_event_per_line_for_codex(yard: Yard, api: Client) -> None:  # noqa: F811
    done = cli(yard, "run", "--json", "--agent", "codex", "write hello as json")
    assert done.returncode == 0, done.stderr
    events = json_lines(done.stdout)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "finish" and events[-1]["status"] == "completed"
    stored = api.logs(events[-1]["runId"]).events
    assert events == stored


def test_a_failed_run_exits_1_with_its_error(yard: Yard) -> None:  # noqa: F811
    done = cli(yard, "run", "overloaded model")
    assert done.returncode == 1
    assert any(line.startswith("failed") for line in done.stdout.splitlines())
    assert "error: " in done.stdout


def test_detach_then_every_command_on_the_run(yard: Yard, api: Client) -> None:  # noqa: F811
    created = json_lines(cli(yard, "run", "--detach", "--json", "write hello detached").stdout)
    run_id = created[0]["runId"]
    api.wait(run_id, timeout=90)
    show = cli(yard, "show", run_id)
    assert "status: completed" in show.stdout and "Wrote hello.txt." in show.stdout
    assert json_lines(cli(yard, "show", run_id, "--json").stdout)[0]["status"] == "completed"
    assert run_id in cli(yard, "tasks").stdout
    listed = json_lines(cli(yard, "tasks", "--json", "--status", "completed").stdout)[0]
    assert run_id in {t["runId"] for t in listed["tasks"]}
    logs = cli(yard, "logs", run_id)
    assert "Wrote hello.txt." in logs.stdout and "completed" in logs.stdout
    assert json_lines(cli(yard, "logs", run_id, "--json").stdout) == api.logs(run_id).events
    assert "+hello" in cli(yard, "diff", run_id).stdout
    assert "hello.txt" in cli(yard, "files", run_id).stdout
    assert cli(yard, "files", run_id, "hello.txt").stdout == "hello\n"
    ended = cli(yard, "cancel", run_id)
    assert ended.returncode == 1 and "completed" in ended.stdout
    follow = cli(yard, "continue", run_id, "second thoughts", "--follow")
    assert follow.returncode == 0, follow.stderr
    assert "ok" in follow.stdout.splitlines()
    missing = cli(yard, "show", "run_nope")
    assert missing.returncode == 2 and "not found" in missing.stderr


def test_logs_follow_survives_the_connection_dropping_mid_run(
    yard: Yard,  # noqa: F811
    api: Client,
) -> None:
    """Cut twice mid-run: the follower resumes with Last-Event-ID; every event once."""
    with TcpProxy("127.0.0.1", yard.server.port) as proxy:
        run_id = api.create_task("stepwise for the follower").run_id
        follower = subprocess.Popen(
            [sys.executable, "-m", "agentyard.cli", "logs", run_id, "--follow", "--json"],
            env=cli_env(yard, proxy.http_url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert follower.stdout is not None
        lines = []
        for line in follower.stdout:
            lines.append(line)
            if len(lines) in (2, 5):
                proxy.drop()
        assert follower.wait(timeout=60) == 0, follower.stderr.read() if follower.stderr else ""
        assert proxy.drops == 2
    events = json_lines("".join(lines))
    assert events == api.logs(run_id).events
    assert events[-1]["type"] == "finish"


def test_ctrl_c_without_a_terminal_cancels_the_run(yard: Yard, api: Client) -> None:  # noqa: F811
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentyard.cli", "run", "slow and interrupted"],
        env=cli_env(yard),
        # Ctrl-C as a terminal delivers it: a test run in the background inherits SIGINT
        # ignored, and Python then installs no KeyboardInterrupt handler.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    run_id = proc.stderr.readline().split()[-1]
    deadline = time.monotonic() + 30
    while api.status(run_id).status != "running" and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    # Both pipes are read while waiting: a CLI blocked on a full pipe would never exit.
    _, rest = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert api.status(run_id).status == "cancelled"
    assert "cancel" in rest


def test_compare_and_select_on_a_two_agent_group(yard: Yard) -> None:  # noqa: F811
    done = cli(yard, "run", "--json", "--agents", "claude,codex", "write hello in a group")
    assert done.returncode == 0, done.stderr
    created, group = json_lines(done.stdout)
    group_id = created["taskId"]
    claude, codex = (r["runId"] for r in created["runs"])
    assert group["status"] == "completed"
    table = cli(yard, "compare", group_id).stdout
    assert claude in table and codex in table and "claude" in table and "codex" in table
    assert "hello.txt" in table
    compared = json_lines(cli(yard, "compare", group_id, "--json").stdout)[0]
    assert [r["filesChanged"] for r in compared["runs"]] == [1, 1]
    chosen = cli(yard, "select", group_id, codex)
    assert chosen.returncode == 0 and f"selected {codex}" in chosen.stdout
    again = cli(yard, "select", group_id, claude)
    assert again.returncode == 2 and "already has a winner" in again.stderr


def test_version_agents_git_connect_and_keys(yard: Yard) -> None:  # noqa: F811
    assert cli(yard, "--version").stdout.startswith("agentyard ")
    agents = cli(yard, "agents").stdout
    assert "claude" in agents and "codex" in agents
    assert json_lines(cli(yard, "agents", "--json").stdout)[0]["agents"]
    connected = cli(yard, "git", "connect", stdin=TOKEN + "\n")
    assert connected.returncode == 0 and "connected as octocat" in connected.stdout
    assert TOKEN not in connected.stdout + connected.stderr
    assert "token valid" in cli(yard, "git", "status").stdout
    assert cli(yard, "git", "disconnect").returncode == 0
    secret = yard.server.cli("keys", "create", "--name", "laptop", "--user", "carol").strip()
    with Client(yard.url, secret) as carol:
        assert carol.list_tasks().tasks == []
        listed = cli(yard, "keys", "list").stdout
        assert "laptop" in listed and "carol" in listed and secret not in listed
        assert cli(yard, "keys", "revoke", "laptop").returncode == 0
        with pytest.raises(Unauthorized):
            carol.list_tasks()
    assert cli(yard, "keys", "revoke", "laptop").returncode == 1
    keys = json_lines(cli(yard, "keys", "list", "--json").stdout)[0]["keys"]
    assert next(k for k in keys if k["name"] == "laptop")["revokedAt"]
