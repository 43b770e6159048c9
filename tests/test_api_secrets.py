"""A task's environment variables end to end: accepted in both forms, refused when bad,
given to the agent, stored encrypted, never returned, and redacted everywhere."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from agentyard.testing.harness import ServerProcess, read_stream, server_env, wait_status

SECRET = "npm_Zq8sT0ken-7f3a9c1eQ"
OTHER = "other_s3cret-value_42"
REDACTED = "[REDACTED]"

LEAKY = r"""
echo "token: $NPM_TOKEN"
for c in $(printf %s "$NPM_TOKEN" | fold -w1); do printf %s "$c"; sleep 0.01; done; echo
printf %s "$NPM_TOKEN" | base64
printf %s "x$NPM_TOKEN" | base64
printf %s "xy$NPM_TOKEN" | base64 | tr '+/' '-_'
printf 'token=%s\n' "$NPM_TOKEN" > config.txt
printf %s "$NPM_TOKEN" | sha256sum | cut -c1-64 > received.sha
echo "cannot publish with $NPM_TOKEN" >&2
exit 3
"""
SHAS = r"""
for v in NPM_TOKEN OTHER_TOKEN NEW_TOKEN; do
  eval "x=\${$v-unset}"; echo "$v $(printf %s "$x" | sha256sum | cut -c1-64)"
done
"""
COMMANDS = {
    "leaky": {"argv": ["sh", "-c", LEAKY]},
    # One line longer than the runtime's line limit: delivered in pieces, cut mid-secret.
    "long": {
        "argv": ["python3", "-c", "import os; print(os.environ['NPM_TOKEN'] * 50000, end='')"]
    },
    "shas": {"argv": ["sh", "-c", SHAS]},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("yard")
    env = server_env(
        data, {"AGENTYARD_COMMANDS": json.dumps(COMMANDS), "AGENTYARD_MAX_CONCURRENT_RUNS": "3"}
    )
    proc = ServerProcess(data, env).start()
    yield proc
    proc.stop()


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def create(client: httpx.Client, command: str, env: Any, **extra: Any) -> dict[str, Any]:
    body = {"prompt": "go", "agent": "command", "model": command, "environmentVariables": env}
    r = client.post("/api/v1/tasks", json={**body, **extra})
    assert r.status_code == 200, r.text
    return dict(r.json())


def text_of(task: dict[str, Any]) -> str:
    return "".join(p.get("text", "") for p in task["messages"][-1]["parts"])


def encodings(secret: str) -> list[str]:
    raw = secret.encode()
    return [
        base64.b64encode(raw).decode(),
        base64.b64encode(b"x" + raw).decode(),
        base64.urlsafe_b64encode(b"xy" + raw).decode(),
    ]


def assert_hidden(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text
        for encoded in encodings(secret):
            assert encoded.rstrip("=") not in text


def test_the_agent_gets_the_secret_and_it_is_redacted_everywhere(
    server: ServerProcess, client: httpx.Client
) -> None:
    """Printed whole, a character at a time, base64-encoded, written to a file and to stderr
    of a failing command: [REDACTED] in every view, the secret in none, not in the server's
    log and not in the database; and the command did get the real value."""
    body = create(client, "leaky", {"NPM_TOKEN": SECRET})
    run_id = body["runId"]
    status = wait_status(client, run_id, {"completed", "failed"})
    assert status["status"] == "failed"
    assert status["error"] == f"command 'leaky' exited with code 3: cannot publish with {REDACTED}"

    task = client.get(f"/api/v1/tasks/{run_id}")
    text = text_of(task.json())
    assert f"token: {REDACTED}\n" in text  # whole
    assert f"\n{REDACTED}\n" in text  # one character at a time
    assert text.count(REDACTED) >= 5  # and three base64 encodings
    assert task.json()["error"] == status["error"]

    logs = client.get(f"/api/v1/tasks/{run_id}/logs")
    events = logs.json()["events"]
    assert events[-2] == {"type": "error", "errorText": status["error"], "seq": events[-2]["seq"]}
    stderr = "".join(e["delta"] for e in events if e.get("id") == "stderr" and "delta" in e)
    assert stderr == f"cannot publish with {REDACTED}\n"

    with client.stream("GET", f"/api/v1/tasks/{run_id}/logs/stream") as response:
        sse = response.read().decode()
    assert REDACTED in sse and '"type":"finish"' in sse

    diff = client.get(f"/api/v1/tasks/{run_id}/diff")
    assert f"+token={REDACTED}" in diff.json()["diff"]
    # The command received the real value: the hash of what it saw is in its work.
    assert f"+{sha(SECRET)}" in diff.json()["diff"]

    listing = client.get("/api/v1/tasks", params={"limit": 100})
    raw_agent = client.get(f"/api/v1/agent/stream?runId={run_id}").text
    for shown in (task.text, logs.text, sse, diff.text, listing.text, raw_agent, status["error"]):
        assert_hidden(shown, SECRET)
    assert_hidden(server.logs(), SECRET)
    assert f"cannot publish with {REDACTED}" in server.logs()  # "run ended" logged, redacted
    for name in ("agentyard.db", "agentyard.db-wal"):
        path = server.data_dir / name
        if path.exists():
            assert SECRET.encode() not in path.read_bytes()  # events redacted, env sealed


def test_a_secret_cut_across_output_pieces_is_redacted(
    server: ServerProcess, client: httpx.Client
) -> None:
    """A line over the runtime's limit arrives in several deltas, cut inside the secret."""
    run_id = create(client, "long", {"NPM_TOKEN": SECRET})["runId"]
    assert wait_status(client, run_id, {"completed", "failed"})["status"] == "completed"
    logs = client.get(f"/api/v1/tasks/{run_id}/logs")
    deltas = [e["delta"] for e in logs.json()["events"] if e["type"] == "text-delta"]
    assert len(deltas) >= 2
    assert "".join(deltas) == REDACTED * 50000
    task = client.get(f"/api/v1/tasks/{run_id}")
    assert text_of(task.json()) == REDACTED * 50000
    assert_hidden(logs.text + task.text, SECRET)
    status, frames = read_stream(client, f"/api/v1/tasks/{run_id}/logs/stream")
    assert status == 200 and frames[-1].data is not None
    assert "".join(f.data["delta"] for f in frames if f.data and "delta" in f.data) == "".join(
        deltas
    )
    assert_hidden(server.logs(), SECRET)


def test_the_line_form_is_accepted_and_continue_merges(client: httpx.Client) -> None:
    """KEY=VALUE lines (comments and blank lines ignored); a follow-up's variables are laid
    over the chat's (the later value wins); a follow-up without them keeps the chat's."""
    lines = f"# npm\nNPM_TOKEN={SECRET}\n\nOTHER_TOKEN=first-value\r\n"
    first = create(client, "shas", lines)
    wait_status(client, first["runId"], {"completed"})
    text = text_of(client.get(f"/api/v1/tasks/{first['runId']}").json())
    assert text.splitlines() == [
        f"NPM_TOKEN {sha(SECRET)}",
        f"OTHER_TOKEN {sha('first-value')}",
        f"NEW_TOKEN {sha('unset')}",
    ]
    r = client.post(
        f"/api/v1/tasks/{first['runId']}/continue",
        json={
            "prompt": "again",
            "environmentVariables": {"OTHER_TOKEN": OTHER, "NEW_TOKEN": "n3w!"},
        },
    )
    assert r.status_code == 200, r.text
    follow = r.json()["runId"]
    wait_status(client, follow, {"completed"})
    task = client.get(f"/api/v1/tasks/{follow}")
    assert text_of(task.json()).splitlines() == [
        f"NPM_TOKEN {sha(SECRET)}",
        f"OTHER_TOKEN {sha(OTHER)}",
        f"NEW_TOKEN {sha('n3w!')}",
    ]
    r = client.post(f"/api/v1/tasks/{follow}/continue", json={"prompt": "once more"})
    third = r.json()["runId"]
    wait_status(client, third, {"completed"})
    assert text_of(client.get(f"/api/v1/tasks/{third}").json()).splitlines()[1] == (
        f"OTHER_TOKEN {sha(OTHER)}"
    )
    assert_hidden(task.text, SECRET, OTHER)


def test_every_run_of_a_group_gets_the_variables(client: httpx.Client) -> None:
    """With selectedAgents, each run gets them; the group's views show none of them."""
    r = client.post(
        "/api/v1/tasks",
        json={
            "prompt": "go",
            "selectedAgents": [{"agent": "command", "model": m} for m in ("leaky", "shas")],
            "environmentVariables": {"NPM_TOKEN": SECRET, "OTHER_TOKEN": OTHER},
        },
    )
    assert r.status_code == 200, r.text
    leaky, shas = (run["runId"] for run in r.json()["runs"])
    wait_status(client, leaky, {"failed"})
    wait_status(client, shas, {"completed"})
    assert text_of(client.get(f"/api/v1/tasks/{shas}").json()).splitlines()[:2] == [
        f"NPM_TOKEN {sha(SECRET)}",
        f"OTHER_TOKEN {sha(OTHER)}",
    ]
    group = client.get(f"/api/v1/groups/{r.json()['taskId']}")
    compare = client.get(f"/api/v1/groups/{r.json()['taskId']}/compare")
    assert f"+token={REDACTED}" in compare.json()["runs"][0]["diff"]
    assert f"+{sha(SECRET)}" in compare.json()["runs"][0]["diff"]
    assert REDACTED in json.dumps(group.json())  # the failed run's error
    for shown in (r.text, group.text, compare.text):
        assert_hidden(shown, SECRET, OTHER)


BAD = [
    (42, "'environmentVariables' must be an object of strings or a string"),
    ("A=1\nnot a pair", "line 2 is not KEY=VALUE"),
    ({"A": 1}, "the value of 'A' must be a string"),
    ({"1A": "x"}, "'1A' is not a valid name"),
    ({"A-B": "x"}, "'A-B' is not a valid name"),
    ({f"V{i}": "x" for i in range(101)}, "at most 100 variables"),
    ({"BIG": "x" * (32 * 1024 + 1)}, "the value of BIG exceeds 32768 bytes"),
    ({"A": "a\u0000b"}, "NUL"),
    *(
        ({name: "x"}, f"{name} is reserved")
        for name in ("PATH", "HOME", "LD_PRELOAD", "https_proxy", "NO_PROXY", "OPENAI_BASE_URL")
    ),
    *(
        (f"OK=1\n{name}=x", f"{name} is reserved")
        for name in ("AGENTYARD_RUN_ID", "ANTHROPIC_API_KEY", "CLAUDE_X", "GOOGLE_API_KEY")
    ),
]


def runs(client: httpx.Client) -> list[dict[str, Any]]:
    return list(client.get("/api/v1/tasks", params={"limit": 100}).json()["tasks"])


@pytest.mark.parametrize(("env", "message"), BAD)
def test_bad_variables_are_a_400_and_create_nothing(
    client: httpx.Client, env: Any, message: str
) -> None:
    before = runs(client)
    for extra in (
        {"agent": "command", "model": "shas"},
        {"selectedAgents": [{"agent": "command", "model": "shas"}] * 2},
    ):
        r = client.post("/api/v1/tasks", json={"prompt": "x", "environmentVariables": env, **extra})
        assert r.status_code == 400, r.text
        assert message in r.json()["error"] and list(r.json()) == ["error"]
    assert runs(client) == before


def test_bad_variables_on_continue_are_a_400_and_change_nothing(client: httpx.Client) -> None:
    first = create(client, "shas", {"OTHER_TOKEN": OTHER})
    wait_status(client, first["runId"], {"completed"})
    before = runs(client)
    path = f"/api/v1/tasks/{first['runId']}/continue"
    for env, message in [
        ({"PATH": "/tmp"}, "PATH is reserved"),
        ("NO_EQUALS", "line 1 is not KEY=VALUE"),
        ({f"V{i}": "x" for i in range(100)}, "at most 100 variables"),  # 101 once merged
    ]:
        r = client.post(path, json={"prompt": "x", "environmentVariables": env})
        assert r.status_code == 400 and message in r.json()["error"], r.text
    assert runs(client) == before
    r = client.post(path, json={"prompt": "x"})
    follow = r.json()["runId"]
    wait_status(client, follow, {"completed"})
    text = text_of(client.get(f"/api/v1/tasks/{follow}").json())
    assert f"OTHER_TOKEN {sha(OTHER)}" in text  # the chat's variables are as they were
