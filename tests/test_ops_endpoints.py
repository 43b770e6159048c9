"""``/healthz``, ``/readyz`` and ``/metrics`` on a real server: readiness says what the
server has and turns 503 when its database is cut; the metrics parse as Prometheus text
and move when a task runs; the metrics token is enforced; requests are in the JSON access
log, without their query strings."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from agentyard.metrics import Metrics, RunCount
from agentyard.settings import Settings
from agentyard.testing.faults import TcpProxy
from agentyard.testing.harness import (
    ServerProcess,
    WorkerProcess,
    free_port,
    server_env,
    wait_status,
)

COMMANDS = {
    "short": {"argv": ["sh", "-c", "echo hello"]},
    "slow": {"argv": ["sh", "-c", "echo started; sleep 60"]},
    "fails": {"argv": ["sh", "-c", "echo broken >&2; exit 3"]},
}
TOKEN = "metrics-token-for-the-test"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of an exposition, by name and labels (parsing fails on bad text)."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    env = server_env(
        tmp_path,
        {
            "AGENTYARD_COMMANDS": json.dumps(COMMANDS),
            "AGENTYARD_METRICS_TOKEN": TOKEN,
            "AGENTYARD_LOG_FORMAT": "json",
            "AGENTYARD_SANDBOX": "none",
        },
    )
    proc = ServerProcess(tmp_path, env).start()
    try:
        yield proc
    finally:
        proc.stop()


def scrape(server: ServerProcess) -> Samples:
    r = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return samples(r.text)


def test_healthz_and_readyz_say_what_the_server_has(server: ServerProcess) -> None:
    assert httpx.get(f"{server.url}/healthz").json()["ok"] is True
    r = httpx.get(f"{server.url}/readyz")
    body = r.json()
    assert r.status_code == 200 and body["ready"] is True, body
    assert body["database"] == {"reachable": True, "schemaCurrent": True}
    assert body["queue"] == {"kind": "local", "running": True, "executesRuns": True}
    assert body["runtimes"]["command"] is True and "claude" in body["runtimes"]
    assert body["sandbox"] == "none"


def test_metrics_move_when_a_task_runs(server: ServerProcess) -> None:
    before = scrape(server)
    with server.client() as c:
        run_id = c.post(
            "/api/v1/tasks", json={"prompt": "p", "agent": "command", "model": "short"}
        ).json()["runId"]
        assert wait_status(c, run_id, {"completed", "failed"})["status"] == "completed"
        slow = c.post(
            "/api/v1/tasks", json={"prompt": "p", "agent": "command", "model": "slow"}
        ).json()["runId"]
        wait_status(c, slow, {"running"})
        with c.stream("GET", f"/api/v1/tasks/{slow}/logs/stream", timeout=30) as stream:
            assert stream.status_code == 200
            deadline = time.monotonic() + 20
            while value(scrape(server), "agentyard_sse_subscribers") != 1:
                assert time.monotonic() < deadline, "the open stream was never counted"
                time.sleep(0.1)
        assert c.patch(f"/api/v1/tasks/{slow}", json={"action": "cancel"}).status_code == 200
        wait_status(c, slow, {"cancelled"})
    after = scrape(server)
    done = {"agent": "command", "status": "completed"}
    assert value(after, "agentyard_runs_finished_total", **done) == 1 + value(
        before, "agentyard_runs_finished_total", **done
    )
    assert value(after, "agentyard_run_duration_seconds_count", **done) >= 1
    assert value(after, "agentyard_queue_wait_seconds_count", agent="command") >= 2
    assert value(after, "agentyard_events_appended_total") >= 3 + value(
        before, "agentyard_events_appended_total"
    )
    # The database's figures, cluster-wide.
    assert value(after, "agentyard_runs", **done) == 1
    assert value(after, "agentyard_runs", agent="command", status="cancelled") == 1
    assert value(after, "agentyard_metrics_database_errors_total") == 0
    assert value(after, "agentyard_http_requests_total", method="POST", status="200") >= 2
    # Defined for webhook delivery (nothing delivers yet), and the model proxy's.
    text = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert "# TYPE agentyard_webhook_deliveries_total counter" in text
    assert "# TYPE agentyard_model_proxy_requests_total counter" in text
    assert "# TYPE agentyard_run_cost_usd histogram" in text


def test_the_metrics_token_is_enforced(server: ServerProcess) -> None:
    url = f"{server.url}/metrics"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        r = httpx.get(url, headers=headers)
        assert r.status_code == 401, headers
        assert r.json() == {"error": "Unauthorized"}
        assert TOKEN not in r.text
    # An API key is not the metrics token either.
    assert server.client().get("/metrics").status_code == 401
    assert httpx.get(url, headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200
    assert TOKEN not in server.logs()


def test_an_empty_metrics_token_is_refused() -> None:
    with pytest.raises(ValidationError, match="AGENTYARD_METRICS_TOKEN is empty"):
        Settings(metrics_token=" ")


def test_the_access_log_is_json_without_query_strings(server: ServerProcess) -> None:
    with server.client() as c:
        assert c.get("/api/v1/tasks", params={"secret": "s3cr3t-in-query"}).status_code == 200
        assert c.get("/api/v1/tasks/nope/status").status_code == 404
        # A forged line break in the path, and a made-up method.
        assert c.get("/api/v1/tasks/x%0A%7B%22event%22%3A%22forged%22%7D").status_code == 404
        brewed = c.request("PROPFIND", "/api/v1/tasks").status_code
        assert brewed in (400, 405)
    found = scrape(server)
    assert value(found, "agentyard_http_requests_total", method="other", status=str(brewed)) == 1
    assert not any(dict(labels).get("method") == "PROPFIND" for _, labels in found)
    lines = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(lines) < 4:
        lines = [
            json.loads(line)
            for line in server.logs().splitlines()
            if line.startswith("{") and '"http request"' in line
        ]
        time.sleep(0.1)
    seen = {(item["method"], item["path"], item["status"]) for item in lines}
    assert ("GET", "/api/v1/tasks", 200) in seen
    assert ("GET", "/api/v1/tasks/nope/status", 404) in seen
    assert all(isinstance(item["duration_ms"], float) for item in lines)
    logs = server.logs()
    assert not any(line.startswith('{"event": "forged"') for line in logs.splitlines())
    assert "s3cr3t-in-query" not in logs
    assert "sk-ay-test-admin-key" not in logs
    started = [json.loads(line) for line in logs.splitlines() if '"agentyard started"' in line]
    assert started and started[0]["runtimes"]["command"] is True
    assert started[0]["sandbox"] == "none"
    assert any('"listening"' in line and server.url in line for line in logs.splitlines())


def test_a_scrape_without_the_database_still_answers() -> None:
    """The database's figures are left out (and counted as an error), the rest is served."""
    metrics = Metrics()

    async def failing() -> list[RunCount]:
        raise OSError("database gone")

    text = asyncio.run(metrics.scrape(failing, timeout=1)).decode()
    found = samples(text)
    assert value(found, "agentyard_metrics_database_errors_total") == 1
    assert not any(name == "agentyard_queue_depth" for name, _ in found)


@pytest.mark.postgres
def test_readyz_is_503_while_the_database_is_cut(tmp_path: Path, pg_database: str) -> None:
    proxy = TcpProxy("127.0.0.1", 5432)
    env = server_env(
        tmp_path,
        {"AGENTYARD_DATABASE_URL": proxy.url(pg_database), "AGENTYARD_SANDBOX": "none"},
    )
    server = ServerProcess(tmp_path, env, args=("--no-workers",)).start()
    try:
        ready = httpx.get(f"{server.url}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert ready.json()["queue"]["kind"] == "procrastinate"
        proxy.cut()
        started = time.monotonic()
        r = httpx.get(f"{server.url}/readyz", timeout=30)
        assert time.monotonic() - started < 15  # bounded by the probe's own timeout
        body = r.json()
        assert r.status_code == 503 and body["ready"] is False, body
        assert body["database"]["reachable"] is False and body["problems"]
        assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
        proxy.restore()
        deadline = time.monotonic() + 30
        while httpx.get(f"{server.url}/readyz", timeout=30).status_code != 200:
            assert time.monotonic() < deadline, "never ready again"
            time.sleep(0.5)
    finally:
        server.stop()
        proxy.close()


def test_a_logged_path_cannot_forge_a_line() -> None:
    """In the console format too: control characters are escaped, long paths cut."""
    from agentyard.api.access import _shown

    assert _shown("/api/v1/tasks/x\nlevel=error forged") == "/api/v1/tasks/x\\x0alevel=error forged"
    assert len(_shown("/" + "a" * 5000)) <= 1003
    assert _shown("/api/v1/tasks/ünïcode") == "/api/v1/tasks/ünïcode"


def test_a_failed_run_logs_its_error(server: ServerProcess) -> None:
    with server.client() as c:
        run_id = c.post(
            "/api/v1/tasks", json={"prompt": "p", "agent": "command", "model": "fails"}
        ).json()["runId"]
        status = wait_status(c, run_id, {"completed", "failed"})
    assert status["status"] == "failed"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        failed = [
            json.loads(line)
            for line in server.logs().splitlines()
            if line.startswith("{") and '"run failed"' in line
        ]
        if failed:
            break
        time.sleep(0.1)
    assert failed and failed[0]["run_id"] == run_id and failed[0]["level"] == "warning"
    assert failed[0]["error"] == status["error"]


@pytest.mark.postgres
def test_a_worker_serves_its_own_metrics(tmp_path: Path, pg_database: str) -> None:
    """``AGENTYARD_WORKER_METRICS_PORT``: the runs a worker executed, behind the token;
    the database's gauges are left to the API processes."""
    port = free_port()
    env = server_env(
        tmp_path,
        {
            "AGENTYARD_DATABASE_URL": pg_database,
            "AGENTYARD_COMMANDS": json.dumps(COMMANDS),
            "AGENTYARD_SANDBOX": "none",
            "AGENTYARD_METRICS_TOKEN": TOKEN,
            "AGENTYARD_WORKER_METRICS_PORT": str(port),
        },
    )
    api = ServerProcess(tmp_path, env, args=("--no-workers",)).start()
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    url = f"http://127.0.0.1:{port}/metrics"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        with api.client() as c:
            run_id = c.post(
                "/api/v1/tasks", json={"prompt": "p", "agent": "command", "model": "short"}
            ).json()["runId"]
            assert wait_status(c, run_id, {"completed", "failed"})["status"] == "completed"
        found = samples(httpx.get(url, headers=auth, timeout=10).text)
        done = {"agent": "command", "status": "completed"}
        assert value(found, "agentyard_runs_finished_total", **done) == 1
        assert value(found, "agentyard_events_appended_total") >= 3
        assert not any(name in ("agentyard_runs", "agentyard_queue_depth") for name, _ in found)
        assert "agentyard_metrics_database_errors_total" not in {name for name, _ in found}
        denied = httpx.get(url, timeout=10)
        assert denied.status_code == 401 and denied.json() == {"error": "Unauthorized"}
        assert httpx.get(f"http://127.0.0.1:{port}/other", timeout=10).status_code == 404
    finally:
        worker.stop()
        api.stop()
    assert TOKEN not in worker.logs()
