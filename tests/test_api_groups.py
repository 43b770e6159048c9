"""Multi-agent tasks on a real server process, with the command runtime."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from agentyard.runtimes.processes import marked_pids
from agentyard.testing.harness import ServerProcess, running_server, wait_status

COMMANDS = {
    "alpha": {"argv": ["sh", "-c", "printf 'a\\nb\\n' > shared.txt; echo alpha > alpha.txt"]},
    "beta": {"argv": ["sh", "-c", "printf 'a\\nc\\nd\\n' > shared.txt"]},
    "slow": {"argv": ["sh", "-c", "sleep 120"]},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("yard"),
        {"AGENTYARD_COMMANDS": json.dumps(COMMANDS), "AGENTYARD_MAX_CONCURRENT_RUNS": "3"},
    ) as proc:
        yield proc


def group(client: httpx.Client, *models: str) -> httpx.Response:
    return client.post(
        "/api/v1/tasks",
        json={
            "prompt": "do the thing",
            "selectedAgents": [{"agent": "command", "model": m} for m in models],
        },
    )


def test_a_group_runs_side_by_side_compares_and_selects(client: httpx.Client) -> None:
    """Three agents get three runs; compare lines their diffs up by file; selecting a winner
    cancels the run still active, and the group's status follows the documented rules."""
    r = group(client, "alpha", "beta", "slow")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["agentCount"] == 3 and len(body["runs"]) == 3
    alpha, beta, slow = (run["runId"] for run in body["runs"])
    assert body["runId"] == alpha and len({run["chatId"] for run in body["runs"]}) == 3
    for run_id in (alpha, beta):
        assert wait_status(client, run_id, {"completed", "failed"})["status"] == "completed"
    wait_status(client, slow, {"running"})
    view = client.get(f"/api/v1/groups/{body['taskId']}").json()
    assert view["status"] == "running" and view["selectedRunId"] is None
    assert [run["status"] for run in view["runs"]] == ["completed", "completed", "running"]

    compare = client.get(f"/api/v1/groups/{body['taskId']}/compare").json()
    by_run = {run["runId"]: run for run in compare["runs"]}
    assert by_run[alpha]["filesChanged"] == 2 and by_run[beta]["filesChanged"] == 1
    assert "+alpha" in by_run[alpha]["diff"] and "+d" in by_run[beta]["diff"]
    files = {f["path"]: f["runs"] for f in compare["files"]}
    assert set(files) == {"alpha.txt", "shared.txt"}
    assert files["alpha.txt"][beta] is None and files["alpha.txt"][slow] is None
    assert "+c" in files["shared.txt"][beta]["diff"] and files["shared.txt"][alpha]["added"] == 2

    outside = client.post(f"/api/v1/groups/{body['taskId']}/select", json={"runId": "not-in-group"})
    assert outside.status_code == 400
    chosen = client.post(f"/api/v1/groups/{body['taskId']}/select", json={"runId": beta})
    assert chosen.status_code == 200, chosen.text
    assert chosen.json()["selectedRunId"] == beta and chosen.json()["status"] == "completed"
    assert client.get(f"/api/v1/tasks/{slow}/status").json()["status"] == "cancelled"
    assert marked_pids(slow) == []
    again = client.post(f"/api/v1/groups/{body['taskId']}/select", json={"runId": alpha})
    assert again.status_code == 409


def test_cancelling_a_group_cancels_every_active_run(client: httpx.Client) -> None:
    """PATCH {action: cancel} on a group cancels all its active runs: the group is cancelled."""
    body = group(client, "slow", "slow").json()
    view = client.patch(f"/api/v1/groups/{body['taskId']}", json={"action": "cancel"}).json()
    assert view["status"] == "cancelled"
    assert {run["status"] for run in view["runs"]} == {"cancelled"}


@pytest.mark.parametrize("count", [0, 1, 6])
def test_a_group_needs_two_to_five_agents(client: httpx.Client, count: int) -> None:
    """Fewer than 2 or more than 5 entries: 400, and no run is created."""
    before = client.get("/api/v1/tasks", params={"limit": 100}).json()["tasks"]
    r = group(client, *["alpha"] * count)
    assert r.status_code == 400 and "2 to 5" in r.json()["error"]
    assert client.get("/api/v1/tasks", params={"limit": 100}).json()["tasks"] == before


def test_a_group_with_an_unknown_agent_is_rejected_whole(client: httpx.Client) -> None:
    """One unknown agent fails the whole request with 400 listing the supported agents."""
    r = client.post(
        "/api/v1/tasks",
        json={
            "prompt": "x",
            "selectedAgents": [{"agent": "command", "model": "alpha"}, {"agent": "cursor"}],
        },
    )
    assert r.status_code == 400 and "supported agents" in r.json()["error"]
    assert client.get("/api/v1/groups/00000000-0000-4000-8000-000000000000").status_code == 404
