"""A task's own ACP permission policy (``acpPermission``), through a real server process and
the scripted fake ACP agent (sandboxed when bubblewrap is there): each task of one server is
answered by its own policy, follow-ups keep it unless they name another, bad values are 400s
that create nothing."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from agentyard.testing import fake_acp_agent
from agentyard.testing.harness import ServerProcess, server_env, wait_status

OPTIONS = [
    {"optionId": "no", "name": "No", "kind": "reject_once"},
    {"optionId": "yes", "name": "Yes", "kind": "allow_once"},
]
CALL = {
    "toolCallId": "edit-1",
    "title": "Edit notes.txt",
    "kind": "edit",
    "locations": [{"path": "notes.txt"}],
}
SCRIPT = {
    "turns": [
        {
            "steps": [
                {"permission": {"toolCall": CALL, "options": OPTIONS}},
                {
                    "update": {
                        "sessionUpdate": "agent_message_chunk",
                        "content": {"type": "text", "text": "asked"},
                    }
                },
            ]
        }
    ]
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("yard")
    fake = data / "fake-agent"
    fake.mkdir()
    script = fake / "script.json"
    script.write_text(json.dumps(SCRIPT))
    # A copy beside its script: the sandbox sees the virtualenv (with acp), not the source tree.
    program = fake / "fake_acp_agent.py"
    shutil.copyfile(fake_acp_agent.__file__, program)
    agents = {"fake": {"argv": [sys.executable, str(program), str(script)]}}
    env = server_env(
        data,
        {
            "AGENTYARD_ACP_AGENTS": json.dumps(agents),
            "AGENTYARD_SANDBOX_READONLY_PATHS": json.dumps([str(fake)]),
            "AGENTYARD_MAX_CONCURRENT_RUNS": "2",
        },
    )
    proc = ServerProcess(data, env).start()
    yield proc
    proc.stop()


def decisions(client: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    status = wait_status(client, run_id, {"completed", "failed"}, timeout=60)
    assert status["status"] == "completed", status
    stored = client.get(f"/api/v1/tasks/{run_id}/logs").json()["events"]
    return [e["data"] for e in stored if e["type"] == "data-permission"]


def test_each_task_is_answered_by_its_own_policy(client: httpx.Client) -> None:
    """On the same server: a task with acpPermission "deny" has the request rejected, one
    without it is allowed by the default (workspace); the decision names the policy."""
    denied = client.post(
        "/api/v1/tasks", json={"prompt": "edit", "agent": "fake", "acpPermission": "deny"}
    )
    allowed = client.post("/api/v1/tasks", json={"prompt": "edit", "agent": "fake"})
    assert denied.status_code == 200 and allowed.status_code == 200, (denied.text, allowed.text)
    [no] = decisions(client, denied.json()["runId"])
    [yes] = decisions(client, allowed.json()["runId"])
    assert (no["policy"], no["decision"], no["optionId"]) == ("deny", "reject", "no")
    assert (yes["policy"], yes["decision"], yes["optionId"]) == ("workspace", "allow", "yes")
    assert no["toolCallId"] == "edit-1" and no["locations"] == ["notes.txt"]
    view = client.get(f"/api/v1/tasks/{denied.json()['runId']}").json()
    assert view["acpPermission"] == "deny"
    assert client.get(f"/api/v1/tasks/{allowed.json()['runId']}").json()["acpPermission"] is None


def test_a_follow_up_keeps_the_policy_unless_it_names_one(client: httpx.Client) -> None:
    first = client.post(
        "/api/v1/tasks", json={"prompt": "edit", "agent": "fake", "acpPermission": "read-only"}
    ).json()
    [record] = decisions(client, first["runId"])
    assert (record["policy"], record["decision"]) == ("read-only", "reject")  # an edit
    kept = client.post(f"/api/v1/tasks/{first['runId']}/continue", json={"prompt": "again"})
    assert kept.status_code == 200, kept.text
    [record] = decisions(client, kept.json()["runId"])
    assert (record["policy"], record["decision"]) == ("read-only", "reject")
    # "allow" asks for more than the server's "workspace": it is held to "workspace".
    changed = client.post(
        f"/api/v1/tasks/{kept.json()['runId']}/continue",
        json={"prompt": "now do it", "acpPermission": "allow"},
    )
    assert changed.status_code == 200, changed.text
    [record] = decisions(client, changed.json()["runId"])
    assert (record["policy"], record["decision"]) == ("workspace", "allow")
    # ... and that run's follow-up keeps what it asked for.
    after = client.post(f"/api/v1/tasks/{changed.json()['runId']}/continue", json={"prompt": "x"})
    assert client.get(f"/api/v1/tasks/{after.json()['runId']}").json()["acpPermission"] == "allow"
    [record] = decisions(client, after.json()["runId"])
    assert record["policy"] == "workspace"


@pytest.mark.parametrize("value", ["yolo", "DENY", "", 1, True, ["deny"], {"policy": "deny"}])
def test_a_bad_policy_is_a_400_naming_the_field_and_its_values(
    client: httpx.Client, value: Any
) -> None:
    before = client.get("/api/v1/tasks", params={"limit": 100}).json()["tasks"]
    r = client.post(
        "/api/v1/tasks", json={"prompt": "edit", "agent": "fake", "acpPermission": value}
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert "acpPermission" in error
    for name in ("workspace", "allow", "read-only", "deny"):
        assert f'"{name}"' in error
    assert len(client.get("/api/v1/tasks", params={"limit": 100}).json()["tasks"]) == len(before)


def test_a_bad_policy_on_continue_is_a_400_and_queues_nothing(client: httpx.Client) -> None:
    first = client.post("/api/v1/tasks", json={"prompt": "edit", "agent": "fake"}).json()
    wait_status(client, first["runId"], {"completed", "failed"}, timeout=60)
    r = client.post(
        f"/api/v1/tasks/{first['runId']}/continue",
        json={"prompt": "again", "acpPermission": "anything"},
    )
    assert r.status_code == 400, r.text
    assert "acpPermission" in r.json()["error"] and '"read-only"' in r.json()["error"]
    chat = client.get(f"/api/v1/tasks/{first['runId']}").json()
    assert len(chat["messages"]) == 2  # no follow-up was added to the chat


def test_every_run_of_a_group_gets_the_task_policy(client: httpx.Client) -> None:
    r = client.post(
        "/api/v1/tasks",
        json={
            "prompt": "edit",
            "acpPermission": "deny",
            "selectedAgents": [{"agent": "fake"}, {"agent": "fake"}],
        },
    )
    assert r.status_code == 200, r.text
    for run in r.json()["runs"]:
        [record] = decisions(client, run["runId"])
        assert (record["policy"], record["decision"]) == ("deny", "reject")
