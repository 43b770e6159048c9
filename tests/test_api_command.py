"""The Agent API end to end on a real server process, with the command runtime."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agentyard.runtimes.processes import marked_pids
from agentyard.testing.harness import (
    ServerProcess,
    read_stream,
    running_server,
    server_env,
    wait_status,
)

COMMANDS = {
    "echo": {"argv": ["sh", "-c", 'echo "you said: $AGENTYARD_PROMPT"; echo done > out.txt']},
    "argv": {"argv": ["printf", "%s\\n", "{prompt}"]},
    "lines": {"argv": ["sh", "-c", "for i in $(seq 1 40); do echo line $i; sleep 0.02; done"]},
    "slow": {"argv": ["sh", "-c", "echo started; sleep 120 & sleep 120; echo never"]},
    "fail": {"argv": ["sh", "-c", "echo working; echo 'disk on fire' >&2; exit 3"]},
    "short-timeout": {"argv": ["sleep", "30"], "timeout_seconds": 1},
    "env": {"argv": ["env"]},
    "long-line": {"argv": ["python3", "-c", "print('x' * 200000, end='')"]},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("yard"),
        {
            "AGENTYARD_COMMANDS": json.dumps(COMMANDS),
            "AGENTYARD_MAX_CONCURRENT_RUNS": "3",
            "AGENTYARD_MAX_BODY_BYTES": "65536",
        },
    ) as proc:
        yield proc


def create(client: httpx.Client, command: str, prompt: str = "hi") -> dict[str, str]:
    r = client.post("/api/v1/tasks", json={"prompt": prompt, "agent": "command", "model": command})
    assert r.status_code == 200, r.text
    return r.json()


def test_create_returns_ids_at_once_and_the_run_completes(client: httpx.Client) -> None:
    """POST answers before the agent runs; the run completes with its output as messages."""
    body = create(client, "echo", "hello there")
    assert body["taskId"] == body["runId"]
    assert body["chatId"].startswith("chat_") and body["assistantMessageId"].startswith("msg_")
    assert body["agentCount"] == 1 and body["status"] == "queued"
    status = wait_status(client, body["runId"], {"completed", "failed"})
    assert status["status"] == "completed" and status["progress"] == 100
    assert status["startedAt"] and status["completedAt"] and status["error"] is None
    task = client.get(f"/api/v1/tasks/{body['runId']}").json()
    assert task["status"] == "completed" and task["github"] is None
    assert [m["role"] for m in task["messages"]] == ["user", "assistant"]
    assert task["messages"][0]["parts"] == [{"type": "text", "text": "hello there"}]
    assert task["messages"][1]["id"] == body["assistantMessageId"]
    assert "you said: hello there" in task["messages"][1]["parts"][0]["text"]
    # The agent's work is committed in the chat's workspace: stats and the unified diff.
    stats = task["diffStats"]
    assert stats["filesChanged"] == 1 and stats["linesAdded"] == 1 and len(stats["commits"]) == 1
    assert stats["files"] == [{"path": "out.txt", "added": 1, "removed": 0, "binary": False}]
    diff = client.get(f"/api/v1/tasks/{body['runId']}/diff").json()
    assert "+++ b/out.txt" in diff["diff"] and "+done" in diff["diff"]


def test_the_prompt_is_one_argument_never_a_shell(client: httpx.Client) -> None:
    """`{prompt}` becomes a single argv element: shell syntax in a prompt stays text."""
    body = create(client, "argv", "a; touch pwned && echo $(id)")
    wait_status(client, body["runId"], {"completed"})
    task = client.get(f"/api/v1/tasks/{body['runId']}").json()
    assert task["messages"][1]["parts"][0]["text"] == "a; touch pwned && echo $(id)\n"


def test_a_failing_command_fails_with_the_tail_of_stderr(client: httpx.Client) -> None:
    """Exit code != 0 ends the run failed; the error carries stderr's last lines."""
    body = create(client, "fail")
    status = wait_status(client, body["runId"], {"completed", "failed"})
    assert status["status"] == "failed" and status["progress"] == 0
    assert "exited with code 3" in status["error"] and "disk on fire" in status["error"]
    logs = client.get(f"/api/v1/tasks/{body['runId']}/logs").json()
    kinds = [e["type"] for e in logs["events"]]
    assert kinds[0] == "start" and kinds[-2:] == ["error", "finish"]
    assert logs["events"][-1]["status"] == "failed"


def test_a_command_past_its_timeout_fails(client: httpx.Client) -> None:
    """The per-command timeout kills the command and fails the run."""
    body = create(client, "short-timeout")
    status = wait_status(client, body["runId"], {"completed", "failed"}, timeout=20)
    assert status["status"] == "failed" and "timed out after 1 s" in status["error"]
    assert marked_pids(body["runId"]) == []


def test_cancel_kills_the_whole_process_tree(client: httpx.Client) -> None:
    """Cancel ends the run cancelled and leaves no process of the run, background ones too."""
    body = create(client, "slow")
    run_id = body["runId"]
    wait_status(client, run_id, {"running"})
    deadline = time.monotonic() + 10
    while len(marked_pids(run_id)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(marked_pids(run_id)) >= 2  # the shell and its sleeps
    r = client.patch(f"/api/v1/tasks/{run_id}", json={"action": "cancel"})
    assert r.status_code == 200
    assert r.json() == {
        "success": True,
        "status": "cancelled",
        "message": f"Task {run_id} cancelled successfully",
    }
    assert marked_pids(run_id) == []
    status = client.get(f"/api/v1/tasks/{run_id}/status").json()
    assert status["status"] == "cancelled" and status["progress"] == 0
    # A terminal run: 200, success false, nothing changed.
    again = client.patch(f"/api/v1/tasks/{run_id}", json={"action": "cancel"})
    assert again.status_code == 200
    assert again.json()["success"] is False and again.json()["status"] == "cancelled"
    events = client.get(f"/api/v1/tasks/{run_id}/logs").json()["events"]
    assert [e["type"] for e in events].count("finish") == 1


def test_patch_renames_and_cancel_on_a_completed_run_changes_nothing(
    client: httpx.Client,
) -> None:
    """A title can be set; cancelling a completed run is success false, still completed."""
    body = create(client, "echo")
    wait_status(client, body["runId"], {"completed"})
    r = client.patch(f"/api/v1/tasks/{body['runId']}", json={"title": "Renamed"})
    assert r.status_code == 200 and r.json()["success"] is True
    assert client.get(f"/api/v1/tasks/{body['runId']}").json()["title"] == "Renamed"
    r = client.patch(f"/api/v1/tasks/{body['runId']}", json={"action": "cancel"})
    assert r.json()["success"] is False and r.json()["status"] == "completed"
    assert client.get(f"/api/v1/tasks/{body['runId']}/status").json()["status"] == "completed"


def test_continue_runs_on_the_same_chat_queued_behind_an_active_run(
    client: httpx.Client,
) -> None:
    """A follow-up sent while the chat's run is active waits behind it (FIFO per chat) and
    says so; cancelling the active run does not cancel the follow-up, which then runs."""
    slow = create(client, "slow")
    wait_status(client, slow["runId"], {"running"})
    r = client.post(
        f"/api/v1/tasks/{slow['runId']}/continue",
        json={"prompt": "again", "agent": "command", "model": "echo"},
    )
    assert r.status_code == 200, r.text
    follow = r.json()
    assert follow["chatId"] == slow["chatId"] and follow["previousRunId"] == slow["runId"]
    assert follow["runId"] != slow["runId"] and follow["status"] == "queued"
    waiting = client.get(f"/api/v1/tasks/{follow['runId']}/status").json()
    assert waiting["status"] == "queued"
    assert waiting["statusDetail"] == "waiting for the chat's previous run"
    cancel = client.patch(f"/api/v1/tasks/{slow['runId']}", json={"action": "cancel"})
    assert cancel.json()["status"] == "cancelled"
    wait_status(client, follow["runId"], {"completed"})
    task = client.get(f"/api/v1/tasks/{follow['runId']}").json()
    assert [m["role"] for m in task["messages"]] == ["user", "assistant", "user", "assistant"]
    # The follow-up ran in the chat's workspace, where the first command's files are.
    r = client.post(
        f"/api/v1/tasks/{follow['runId']}/continue", json={"prompt": "x", "model": "echo"}
    )
    assert r.status_code == 400 and "agent" in r.json()["error"]


def test_list_is_newest_first_paginated_and_filtered(client: httpx.Client) -> None:
    """List pages newest first with hasMore, and filters by status."""
    ids = [create(client, "echo", f"n{i}")["runId"] for i in range(3)]
    for run_id in ids:
        wait_status(client, run_id, {"completed"})
    page = client.get("/api/v1/tasks", params={"limit": 2}).json()
    assert [t["runId"] for t in page["tasks"]] == ids[::-1][:2]
    assert page["hasMore"] is True and page["page"] == 1 and page["limit"] == 2
    page2 = client.get("/api/v1/tasks", params={"limit": 2, "page": 2}).json()
    assert page2["tasks"][0]["runId"] == ids[0]
    done = client.get("/api/v1/tasks", params={"status": "completed", "limit": 100}).json()
    assert {t["status"] for t in done["tasks"]} == {"completed"}
    assert set(ids) <= {t["runId"] for t in done["tasks"]}


def test_sse_streams_live_replays_and_resumes_without_loss(client: httpx.Client) -> None:
    """Live SSE gets every event in seq order; Last-Event-ID and ?after resume exactly;
    a finished run replays and closes; a client holding the last event gets 204."""
    body = create(client, "lines")
    run_id = body["runId"]
    # Live: read part of the stream, drop the connection, resume from the last id.
    status, first = read_stream(client, f"/api/v1/tasks/{run_id}/logs/stream", stop_after=10)
    assert status == 200 and len(first) == 10
    last_id = first[-1].id
    assert last_id is not None
    status, rest = read_stream(
        client, f"/api/v1/tasks/{run_id}/logs/stream", headers={"Last-Event-ID": str(last_id)}
    )
    assert status == 200
    ids = [f.id for f in first + rest]
    assert ids == list(range(1, len(ids) + 1))
    assert rest[-1].data is not None and rest[-1].data["type"] == "finish"
    deltas = [f.data["delta"] for f in first + rest if f.data and f.data["type"] == "text-delta"]
    assert deltas == [f"line {i}\n" for i in range(1, 41)]
    # Replay of a finished run: same events, then the stream closes.
    status, replay = read_stream(client, f"/api/v1/tasks/{run_id}/logs/stream")
    assert [f.data for f in replay] == [f.data for f in first + rest]
    status, tail = read_stream(client, f"/api/v1/tasks/{run_id}/logs/stream?after={len(ids) - 2}")
    assert [f.id for f in tail] == [len(ids) - 1, len(ids)]
    status, _ = read_stream(
        client, f"/api/v1/tasks/{run_id}/logs/stream", headers={"Last-Event-ID": str(len(ids))}
    )
    assert status == 204
    # The raw agent stream: a connect event, then the same events.
    status, raw = read_stream(client, f"/api/v1/agent/stream?runId={run_id}")
    assert raw[0].data == {"type": "resume", "runId": run_id, "status": "completed", "after": 0}
    assert [f.data for f in raw[1:]] == [f.data for f in replay]
    no_deltas = client.get(f"/api/v1/tasks/{run_id}/logs", params={"includeDeltas": "false"})
    assert "text-delta" not in {e["type"] for e in no_deltas.json()["events"]}


def test_agent_status_answers_nulls_for_unknown_runs(client: httpx.Client) -> None:
    """`/agent/status` gives the raw status, nulls for an unknown run, 400 without runId."""
    body = create(client, "echo")
    wait_status(client, body["runId"], {"completed"})
    r = client.get("/api/v1/agent/status", params={"runId": body["runId"]}).json()
    assert r["status"] == "completed" and r["assistantMessageId"] == body["assistantMessageId"]
    unknown = client.get("/api/v1/agent/status", params={"runId": "nope"})
    assert unknown.status_code == 200 and unknown.json()["status"] is None
    assert client.get("/api/v1/agent/status").status_code == 400


def test_auth_is_required_and_runs_belong_to_their_user(
    server: ServerProcess, client: httpx.Client
) -> None:
    """No key or a wrong key: 401; another user's run: 403, and not in their list."""
    body = create(client, "echo")
    run_id = body["runId"]
    anon = httpx.get(f"{server.url}/api/v1/tasks")
    assert anon.status_code == 401 and anon.json() == {"error": "Unauthorized"}
    with server.client("sk-ay-wrong") as wrong:
        assert wrong.get(f"/api/v1/tasks/{run_id}").status_code == 401
    bob_key = server.cli("keys", "create", "--name", "bob-laptop", "--user", "bob").strip()
    assert bob_key.startswith("sk-ay-")
    with server.client(bob_key) as bob:
        for method, path, body in [
            ("GET", f"/api/v1/tasks/{run_id}", None),
            ("GET", f"/api/v1/tasks/{run_id}/status", None),
            ("GET", f"/api/v1/tasks/{run_id}/logs", None),
            ("GET", f"/api/v1/tasks/{run_id}/logs/stream", None),
            ("PATCH", f"/api/v1/tasks/{run_id}", {"action": "cancel"}),
            ("POST", f"/api/v1/tasks/{run_id}/continue", {"prompt": "x"}),
        ]:
            r = bob.request(method, path, json=body)
            assert r.status_code == 403, (method, path, r.text)
            assert r.json() == {"error": "Task belongs to a different user"}
        assert run_id not in {t["runId"] for t in bob.get("/api/v1/tasks").json()["tasks"]}


BAD_REQUESTS = [
    ("POST", "/api/v1/tasks", b"{not json", "invalid JSON"),
    ("POST", "/api/v1/tasks", b"[1, 2]", "JSON object"),
    ("POST", "/api/v1/tasks", b"{}", "'message' or 'prompt' is required"),
    ("POST", "/api/v1/tasks", b'{"prompt": "   "}', "is required"),
    ("POST", "/api/v1/tasks", b'{"prompt": 42}', "must be a string"),
    ("POST", "/api/v1/tasks", b'{"prompt": "x", "agent": "cursor"}', "supported agents: claude"),
    (
        "POST",
        "/api/v1/tasks",
        b'{"prompt": "x", "agent": "command", "model": "nope"}',
        "unknown command",
    ),
    ("POST", "/api/v1/tasks", b'{"prompt": "a\\u0000b"}', "NUL"),
    ("POST", "/api/v1/tasks", b'{"prompt": "a\\ud800b"}', "lone surrogate"),
    ("POST", "/api/v1/tasks", b'{"prompt": "x", "title": "' + b"t" * 201 + b'"}', "at most 200"),
    ("GET", "/api/v1/tasks?limit=0", None, "limit"),
    ("GET", "/api/v1/tasks?limit=101", None, "limit"),
    ("GET", "/api/v1/tasks?limit=abc", None, "limit"),
    ("GET", "/api/v1/tasks?page=0", None, "page"),
    ("GET", "/api/v1/tasks?status=done", None, "'status' must be one of"),
    ("GET", "/api/v1/tasks?page=10000000000000000000", None, "page"),
]


@pytest.mark.parametrize(("method", "path", "body", "message"), BAD_REQUESTS)
def test_bad_input_is_a_400_that_says_why_and_changes_nothing(
    client: httpx.Client, method: str, path: str, body: bytes | None, message: str
) -> None:
    """Each malformed request gets 400 {"error": ...} naming the problem; no run is made."""
    before = client.get("/api/v1/tasks", params={"limit": 100}).json()["tasks"]
    r = client.request(method, path, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]
    assert client.get("/api/v1/tasks", params={"limit": 100}).json()["tasks"] == before


def test_bad_patch_and_continue_bodies_are_400(client: httpx.Client) -> None:
    """PATCH needs a valid action or title; continue needs a prompt; model needs agent."""
    body = create(client, "echo")
    run_id = body["runId"]
    wait_status(client, run_id, {"completed"})
    for payload, message in [
        ({"action": "stop"}, "'action' must be"),
        ({}, "nothing to do"),
        ({"title": ""}, "'title'"),
    ]:
        r = client.patch(f"/api/v1/tasks/{run_id}", json=payload)
        assert r.status_code == 400 and message in r.json()["error"]
    r = client.post(f"/api/v1/tasks/{run_id}/continue", json={})
    assert r.status_code == 400 and "'prompt'" in r.json()["error"]
    r = client.post(f"/api/v1/tasks/{run_id}/continue", json={"prompt": "x", "model": "m"})
    assert r.status_code == 400 and "'model' requires 'agent'" in r.json()["error"]
    r = client.get(f"/api/v1/tasks/{run_id}/logs/stream", headers={"Last-Event-ID": "x"})
    assert r.status_code == 400


def test_unknown_runs_are_404_and_big_bodies_413(client: httpx.Client) -> None:
    """A run that does not exist is 404; a body over the configured limit is 413."""
    for path in ["/api/v1/tasks/0b7e9a3e-0000-4000-8000-000000000000", "/api/v1/tasks/not-a-run"]:
        r = client.get(path)
        assert r.status_code == 404 and "not found" in r.json()["error"]
    r = client.post("/api/v1/tasks", content=b'{"prompt": "' + b"x" * 70_000 + b'"}')
    assert r.status_code == 413 and "exceeds" in r.json()["error"]


def test_a_fresh_server_creates_and_prints_an_admin_key(tmp_path: Path) -> None:
    """With no keys, the first serve creates one, prints it and writes admin.key (0600)."""
    env = server_env(tmp_path)
    del env["AGENTYARD_API_KEY"]
    proc = ServerProcess(tmp_path, env).start()
    try:
        key_file = tmp_path / "admin.key"
        key = key_file.read_text().strip()
        assert key.startswith("sk-ay-") and key in proc.logs()
        assert key_file.stat().st_mode & 0o777 == 0o600
        with proc.client(key) as c:
            assert c.get("/api/v1/tasks").status_code == 200
        db = (tmp_path / "agentyard.db").read_bytes()
        assert key.encode() not in db  # stored hashed
    finally:
        proc.stop()


def test_a_killed_server_leaves_no_ghost_runs(tmp_path: Path) -> None:
    """SIGKILL mid-run, restart: the running run is interrupted (error + finish appended),
    its orphaned processes are killed, and the queued runs survive and complete. Unconfined,
    so that the agent outlives its server (in a sandbox it dies with it: see the sandbox
    tests) and the restart must find and kill it."""
    env = server_env(
        tmp_path,
        {
            "AGENTYARD_COMMANDS": json.dumps(COMMANDS),
            "AGENTYARD_MAX_CONCURRENT_RUNS": "1",
            "AGENTYARD_SANDBOX": "none",
        },
    )
    first = ServerProcess(tmp_path, env).start()
    with first.client() as c:
        slow = create(c, "slow")["runId"]
        wait_status(c, slow, {"running"})
        queued = [create(c, "echo", f"q{i}")["runId"] for i in range(2)]
        assert {c.get(f"/api/v1/tasks/{q}/status").json()["status"] for q in queued} == {"queued"}
        deadline = time.monotonic() + 10
        while not marked_pids(slow) and time.monotonic() < deadline:
            time.sleep(0.05)
    first.kill()
    assert marked_pids(slow), "the agent outlived its server (it runs in its own session)"
    second = ServerProcess(tmp_path, env, port=first.port).start()
    try:
        with second.client() as c:
            status = c.get(f"/api/v1/tasks/{slow}/status").json()
            assert status["status"] == "interrupted" and status["progress"] == 0
            assert "restarted" in status["error"]
            assert marked_pids(slow) == []
            for q in queued:
                assert wait_status(c, q, {"completed", "failed"})["status"] == "completed"
            events = c.get(f"/api/v1/tasks/{slow}/logs").json()["events"]
            assert [e["type"] for e in events][-2:] == ["error", "finish"]
            assert events[-1]["status"] == "interrupted"
            code, replay = read_stream(c, f"/api/v1/tasks/{slow}/logs/stream")
            last = dict(events[-1])
            assert code == 200 and replay[-1].id == last.pop("seq")
            assert replay[-1].data == last
    finally:
        second.stop()


def test_commands_never_see_the_servers_secrets(client: httpx.Client) -> None:
    """The server's own settings and provider keys are not in a command's environment."""
    body = create(client, "env")
    wait_status(client, body["runId"], {"completed"})
    output = client.get(f"/api/v1/tasks/{body['runId']}").json()["messages"][1]["parts"][0]
    assert "AGENTYARD_PROMPT=" in output["text"]
    names = {line.split("=", 1)[0] for line in output["text"].splitlines()}
    leaked = {
        n
        for n in names
        if n.startswith(("ANTHROPIC_", "OPENAI_"))
        or n in {"AGENTYARD_API_KEY", "AGENTYARD_COMMANDS", "AGENTYARD_DATA_DIR"}
    }
    assert leaked == set()


def test_an_endless_line_of_output_is_delivered(client: httpx.Client) -> None:
    """Output with no newline, longer than any read buffer, completes the run intact."""
    body = create(client, "long-line")
    assert wait_status(client, body["runId"], {"completed", "failed"})["status"] == "completed"
    text = client.get(f"/api/v1/tasks/{body['runId']}").json()["messages"][1]["parts"][0]["text"]
    assert text == "x" * 200000


def test_resume_points_past_any_sequence_number_are_refused(client: httpx.Client) -> None:
    """A resume point beyond the largest event id is a 400, not a broken stream."""
    body = create(client, "slow")
    path = f"/api/v1/tasks/{body['runId']}/logs/stream"
    assert client.get(path, params={"after": 10**19}).status_code == 400
    assert client.get(path, headers={"Last-Event-ID": str(2**40)}).status_code == 400
    client.patch(f"/api/v1/tasks/{body['runId']}", json={"action": "cancel"})


def test_concurrent_follow_ups_all_run_in_one_order(client: httpx.Client) -> None:
    """Several follow-ups sent at once are all accepted and chained: each one's previous run
    is the one before it, and they run one after the other."""
    from concurrent.futures import ThreadPoolExecutor

    body = create(client, "echo")
    wait_status(client, body["runId"], {"completed"})
    path = f"/api/v1/tasks/{body['runId']}/continue"
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: client.post(path, json={"prompt": "again"}), range(4)))
    assert [a.status_code for a in answers] == [200] * 4
    follows = {a.json()["previousRunId"]: a.json()["runId"] for a in answers}
    chain = [body["runId"]]
    while chain[-1] in follows:
        chain.append(follows[chain[-1]])
    assert len(chain) == 5  # one line, no fork
    runs = [wait_status(client, run_id, {"completed"}) for run_id in chain[1:]]
    starts = [r["startedAt"] for r in runs]
    ends = [r["completedAt"] for r in runs]
    assert all(ends[i] <= starts[i + 1] for i in range(3))


def test_the_status_of_a_run_is_the_same_however_it_is_answered(
    server: ServerProcess, client: httpx.Client
) -> None:
    """The polled status (answered before the routing) carries what the task view says, and
    every refusal is the route's own: another user's run, an unknown one, a bad or revoked
    key."""
    run_id = create(client, "echo")["runId"]
    wait_status(client, run_id, {"completed"})
    status = client.get(f"/api/v1/tasks/{run_id}/status")
    assert status.status_code == 200
    assert status.headers["content-type"] == "application/json"
    task = client.get(f"/api/v1/tasks/{run_id}").json()
    body = status.json()
    assert set(body) == {
        "runId",
        "status",
        "progress",
        "error",
        "statusDetail",
        "startedAt",
        "completedAt",
    }
    assert body["runId"] == run_id and body["status"] == "completed" and body["progress"] == 100
    assert (body["startedAt"], body["completedAt"]) == (task["startedAt"], task["completedAt"])
    secret = server.cli("keys", "create", "--name", "status-poller", "--user", "dora").strip()
    with server.client(secret) as dora:
        other = dora.get(f"/api/v1/tasks/{run_id}/status")
        assert other.status_code == 403
        assert other.json() == {"error": "Task belongs to a different user"}
        mine = dora.post("/api/v1/tasks", json={"prompt": "x", "agent": "command", "model": "echo"})
        wait_status(dora, mine.json()["runId"], {"completed"})
        assert dora.get(f"/api/v1/tasks/{mine.json()['runId']}/status").status_code == 200
        unknown = dora.get("/api/v1/tasks/nope/status")
        assert unknown.status_code == 404 and "error" in unknown.json()
        server.cli("keys", "revoke", "status-poller")
        # Revoked on the same data directory: refused at once, not after a cache's delay.
        revoked = dora.get(f"/api/v1/tasks/{mine.json()['runId']}/status")
        assert revoked.status_code == 401 and revoked.json() == {"error": "Unauthorized"}
    bare = httpx.get(f"{server.url}/api/v1/tasks/{run_id}/status", timeout=10)
    assert bare.status_code == 401
