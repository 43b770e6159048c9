"""Signed webhooks end to end: a real server process, command-agent runs, and a real
receiver on 127.0.0.1 that verifies every message with the ``standardwebhooks`` package."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from agentyard.testing.harness import ServerProcess, server_env, wait_status
from agentyard.testing.webhook_receiver import Received, WebhookReceiver

COMMANDS = {
    "echo": {"argv": ["sh", "-c", "echo hi"]},
    "fail": {"argv": ["sh", "-c", "echo 'disk on fire' >&2; exit 3"]},
    "slow": {"argv": ["sh", "-c", "sleep 60"]},
}
FIELDS = {
    "type",
    "timestamp",
    "runId",
    "taskId",
    "groupId",
    "chatId",
    "status",
    "statusDetail",
    "error",
    "completedAt",
    "github",
    "usage",
    "costUsd",
}


def yard_env(data: Path, **extra: str) -> dict[str, str]:
    return server_env(
        data,
        {
            "AGENTYARD_COMMANDS": json.dumps(COMMANDS),
            "AGENTYARD_SANDBOX": "none",
            "AGENTYARD_WEBHOOK_PRIVATE_HOSTS": json.dumps(["http://127.0.0.1"]),
            "AGENTYARD_WEBHOOK_TIMEOUT_SECONDS": "1",
            "AGENTYARD_WEBHOOK_RETRY_BASE_SECONDS": "0.2",
            **extra,
        },
    )


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver(hang_seconds=3).start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("yard")
    proc = ServerProcess(data, yard_env(data)).start()
    yield proc
    proc.stop()


_users = iter(range(1_000_000))


@pytest.fixture
def user(server: ServerProcess) -> Iterator[httpx.Client]:
    """A client of a fresh user: its endpoints see only its own runs."""
    name = f"u{next(_users)}"
    key = server.cli("keys", "create", "--name", name, "--user", name).strip()
    with server.client(key) as c:
        yield c


def register(client: httpx.Client, url: str, **body: Any) -> dict[str, Any]:
    r = client.post("/api/v1/webhooks", json={"url": url, **body})
    assert r.status_code == 201, r.text
    return dict(r.json())


def create(client: httpx.Client, command: str, **body: Any) -> dict[str, Any]:
    r = client.post(
        "/api/v1/tasks", json={"prompt": "hi", "agent": "command", "model": command, **body}
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or check}")


def verified(secret: str, message: Received) -> dict[str, Any]:
    """The payload, once the Standard Webhooks library accepts the signature."""
    payload = Webhook(secret).verify(message.body, message.headers)
    assert isinstance(payload, dict)
    return payload


def statuses(receiver: WebhookReceiver, path: str, run_id: str, secret: str) -> list[str]:
    return [
        p["status"]
        for p in (verified(secret, m) for m in receiver.at(path))
        if p["runId"] == run_id
    ]


def deliveries(client: httpx.Client, endpoint_id: str) -> list[dict[str, Any]]:
    r = client.get(f"/api/v1/webhooks/{endpoint_id}/deliveries")
    assert r.status_code == 200, r.text
    return list(r.json()["deliveries"])


def test_every_status_is_delivered_signed_and_in_order(
    user: httpx.Client, receiver: WebhookReceiver
) -> None:
    endpoint = register(user, receiver.url("in-order"), description="ci")
    assert endpoint["id"].startswith("whe_") and endpoint["secret"].startswith("whsec_")
    assert endpoint["events"] == ["*"] and endpoint["description"] == "ci"
    run = create(user, "echo")
    wait_status(user, run["runId"], {"completed"})
    got = wait_for(
        lambda: (
            len(statuses(receiver, "in-order", run["runId"], endpoint["secret"])) >= 3
            and statuses(receiver, "in-order", run["runId"], endpoint["secret"])
        ),
        what="three deliveries",
    )
    assert got == ["queued", "running", "completed"]
    messages = receiver.at("in-order")
    last = verified(endpoint["secret"], messages[-1])
    assert set(last) == FIELDS
    assert last["type"] == "run.completed" and last["taskId"] == run["runId"]
    assert last["chatId"] == run["chatId"] and last["completedAt"] and last["error"] is None
    assert messages[-1].headers["content-type"] == "application/json"
    assert messages[-1].headers["webhook-signature"].startswith("v1,")
    # Another secret does not verify it.
    with pytest.raises(Exception, match="signature"):
        Webhook("whsec_" + "A" * 43 + "=").verify(messages[-1].body, messages[-1].headers)
    shown = deliveries(user, endpoint["id"])
    assert [d["type"] for d in shown] == ["run.completed", "run.running", "run.queued"]
    assert all(d["state"] == "delivered" and d["attempts"] == 1 for d in shown)
    assert {d["id"] for d in shown} == {m.headers["webhook-id"] for m in messages}
    assert shown[0]["attemptLog"][0]["statusCode"] == 200
    # The secret is shown once: never in the list, the endpoint, or its deliveries.
    listed = user.get("/api/v1/webhooks")
    one = user.get(f"/api/v1/webhooks/{endpoint['id']}")
    for text in (listed.text, one.text, json.dumps(shown)):
        assert endpoint["secret"] not in text and "secret" not in text.lower()
    assert [e["id"] for e in listed.json()["webhooks"]] == [endpoint["id"]]
    # Each delivery is counted in /metrics, by outcome.
    from prometheus_client.parser import text_string_to_metric_families

    scraped = text_string_to_metric_families(user.get("/metrics").text)
    counts = {
        s.labels["outcome"]: s.value
        for family in scraped
        if family.name == "agentyard_webhook_deliveries"
        for s in family.samples
        if s.name.endswith("_total")
    }
    assert counts.get("delivered", 0) >= 3


def test_a_failing_run_and_a_cancelled_one_report_why(
    user: httpx.Client, receiver: WebhookReceiver
) -> None:
    """An endpoint subscribed to some statuses gets only those."""
    endpoint = register(user, receiver.url("ends"), events=["failed", "cancelled"])
    failed = create(user, "fail")
    wait_status(user, failed["runId"], {"failed"})
    slow = create(user, "slow")
    wait_status(user, slow["runId"], {"running"})
    r = user.patch(f"/api/v1/tasks/{slow['runId']}", json={"action": "cancel"})
    assert r.json()["status"] == "cancelled"
    wait_for(lambda: len(receiver.at("ends")) >= 2, what="two deliveries")
    received = [verified(endpoint["secret"], m) for m in receiver.at("ends")]
    payloads = {p["runId"]: p for p in received}
    assert payloads[failed["runId"]]["type"] == "run.failed"
    assert "disk on fire" in payloads[failed["runId"]]["error"]
    assert payloads[slow["runId"]]["status"] == "cancelled"
    assert payloads[slow["runId"]]["error"] == "Cancelled by user"
    assert len(receiver.at("ends")) == 2  # nothing for queued, running


def test_500s_and_a_hanging_receiver_are_retried(
    user: httpx.Client, receiver: WebhookReceiver
) -> None:
    receiver.script["/flaky"] = [500, "hang", 503]
    endpoint = register(user, receiver.url("flaky"), events=["completed"])
    run = create(user, "echo")
    wait_status(user, run["runId"], {"completed"})

    def delivered() -> list[dict[str, Any]]:
        shown = deliveries(user, endpoint["id"])
        return shown if shown and shown[0]["state"] == "delivered" else []

    (delivery,) = wait_for(delivered, what="delivered after retries")
    assert delivery["attempts"] == 4 and delivery["lastStatusCode"] == 200
    log = delivery["attemptLog"]  # newest first
    assert [e["statusCode"] for e in log] == [200, 503, None, 500]
    assert "timed out" in log[2]["error"]
    assert len(log[1]["response"]) == 1024  # the excerpt, not the 5000-byte body
    ids = {m.headers["webhook-id"] for m in receiver.at("flaky")}
    assert ids == {delivery["id"]}  # every attempt carries the same message id
    assert statuses(receiver, "flaky", run["runId"], endpoint["secret"]) == ["completed"] * 4


def test_redelivery_sends_the_message_again(user: httpx.Client, receiver: WebhookReceiver) -> None:
    endpoint = register(user, receiver.url("again"), events=["completed"])
    run = create(user, "echo")
    wait_status(user, run["runId"], {"completed"})
    wait_for(lambda: receiver.at("again"), what="the first delivery")
    (delivery,) = wait_for(lambda: deliveries(user, endpoint["id"]))
    wait_for(lambda: deliveries(user, endpoint["id"])[0]["state"] == "delivered")
    r = user.post(f"/api/v1/webhooks/{endpoint['id']}/deliveries/{delivery['id']}/redeliver")
    assert r.status_code == 200 and r.json()["state"] == "pending", r.text
    wait_for(lambda: len(receiver.at("again")) == 2, what="the redelivery")
    first, second = receiver.at("again")
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == delivery["id"]
    assert verified(endpoint["secret"], second)["runId"] == run["runId"]
    wait_for(lambda: deliveries(user, endpoint["id"])[0]["attempts"] == 2)
    bad = user.post(f"/api/v1/webhooks/{endpoint['id']}/deliveries/msg_nope/redeliver")
    assert bad.status_code == 404 and "error" in bad.json()


def test_a_tasks_own_webhook_is_signed_with_its_own_secret(
    user: httpx.Client, receiver: WebhookReceiver
) -> None:
    plain = create(user, "echo")
    assert "webhookSecret" not in plain
    run = create(user, "echo", webhookUrl=receiver.url("own"))
    secret = run["webhookSecret"]
    assert secret.startswith("whsec_")
    wait_status(user, run["runId"], {"completed"})
    wait_for(lambda: len(receiver.at("own")) >= 3, what="the task's deliveries")
    assert statuses(receiver, "own", run["runId"], secret) == ["queued", "running", "completed"]
    # A follow-up inherits the chat's webhook.
    r = user.post(f"/api/v1/tasks/{run['runId']}/continue", json={"prompt": "again"})
    assert r.status_code == 200, r.text
    follow = r.json()
    assert "webhookSecret" not in follow
    wait_status(user, follow["runId"], {"completed"})
    wait_for(lambda: len(statuses(receiver, "own", follow["runId"], secret)) == 3)
    task = user.get(f"/api/v1/tasks/{run['runId']}").text
    assert secret not in task
    # No other run of the user reports there.
    assert {verified(secret, m)["runId"] for m in receiver.at("own")} == {
        run["runId"],
        follow["runId"],
    }


def test_every_run_of_a_group_reports_to_the_tasks_webhook(
    user: httpx.Client, receiver: WebhookReceiver
) -> None:
    pair = [{"agent": "command", "model": "echo"}] * 2
    r = user.post(
        "/api/v1/tasks",
        json={"prompt": "hi", "selectedAgents": pair, "webhookUrl": receiver.url("group")},
    )
    assert r.status_code == 200, r.text
    group = r.json()
    secret = group["webhookSecret"]
    for run in group["runs"]:
        wait_status(user, run["runId"], {"completed"})
    wait_for(lambda: len(receiver.at("group")) >= 6, what="both runs' deliveries")
    for run in group["runs"]:
        got = statuses(receiver, "group", run["runId"], secret)
        assert got == ["queued", "running", "completed"]
    assert {verified(secret, m)["groupId"] for m in receiver.at("group")} == {group["groupId"]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"url": "http://example.com/hook"}, "must use https"),
        ({"url": "https://localhost:9/hook"}, "non-public address"),
        ({"url": "https://10.0.0.1/hook"}, "non-public address"),
        ({"url": "ftp://example.com/hook"}, "must use https"),
        ({"url": "https://user:pw@example.com/hook"}, "credentials"),
        ({"url": "https://exa mple.com/hook"}, "spaces"),
        ({"url": 42}, "must be a string"),
        ({}, "'url' is required"),
        ({"url": "https://127.0.0.1/x", "events": ["done"]}, "unknown entries"),
        ({"url": "https://127.0.0.1/x", "events": []}, "non-empty array"),
        ({"url": "https://127.0.0.1/x", "description": "d" * 501}, "at most 500"),
    ],
)
def test_bad_endpoints_are_refused(user: httpx.Client, body: dict[str, Any], message: str) -> None:
    r = user.post("/api/v1/webhooks", json=body)
    assert r.status_code == 400 and message in r.json()["error"], r.text
    assert user.get("/api/v1/webhooks").json() == {"webhooks": []}


def test_a_bad_task_webhook_url_creates_no_task(user: httpx.Client) -> None:
    r = user.post(
        "/api/v1/tasks",
        json={"prompt": "hi", "agent": "command", "model": "echo", "webhookUrl": "http://x.io"},
    )
    assert r.status_code == 400 and "'webhookUrl' must use https" in r.json()["error"]
    assert user.get("/api/v1/tasks").json()["tasks"] == []


def test_one_user_cannot_see_or_touch_anothers_endpoints(
    server: ServerProcess, user: httpx.Client, receiver: WebhookReceiver
) -> None:
    endpoint = register(user, receiver.url("mine"))
    other = server.cli("keys", "create", "--name", "eve", "--user", "eve").strip()
    with server.client(other) as eve:
        assert eve.get("/api/v1/webhooks").json() == {"webhooks": []}
        for method, path in [
            ("GET", f"/api/v1/webhooks/{endpoint['id']}"),
            ("DELETE", f"/api/v1/webhooks/{endpoint['id']}"),
            ("GET", f"/api/v1/webhooks/{endpoint['id']}/deliveries"),
            ("POST", f"/api/v1/webhooks/{endpoint['id']}/deliveries/msg_x/redeliver"),
        ]:
            r = eve.request(method, path)
            assert r.status_code == 403, (method, path, r.text)
            assert r.json() == {"error": "Webhook endpoint belongs to a different user"}
        assert eve.get("/api/v1/webhooks/whe_nope").status_code == 404
    assert user.get(f"/api/v1/webhooks/{endpoint['id']}").status_code == 200
    assert user.delete(f"/api/v1/webhooks/{endpoint['id']}").status_code == 200
    assert user.get(f"/api/v1/webhooks/{endpoint['id']}").status_code == 404
    # Deleted: a later run sends nothing to it.
    run = create(user, "echo")
    wait_status(user, run["runId"], {"completed"})
    assert receiver.at("mine") == []


def test_endpoints_per_user_are_limited(user: httpx.Client, receiver: WebhookReceiver) -> None:
    for i in range(20):
        register(user, receiver.url(f"many-{i}"), events=["failed"])
    r = user.post("/api/v1/webhooks", json={"url": receiver.url("one-too-many")})
    assert r.status_code == 400 and "at most 20" in r.json()["error"]


def test_a_pending_delivery_survives_a_restart_and_the_rules_apply_again(
    tmp_path: Path,
) -> None:
    """Stopped while the receiver is down; started again with it up: delivered. A URL the
    rules no longer allow is refused at delivery time."""
    receiver = WebhookReceiver()  # not listening yet
    env = yard_env(tmp_path / "yard")
    server = ServerProcess(tmp_path / "yard", env).start()
    try:
        with server.client() as admin:
            endpoint = register(admin, receiver.url("later"), events=["completed"])
            run = create(admin, "echo")
            wait_status(admin, run["runId"], {"completed"})
            wait_for(
                lambda: (
                    deliveries(admin, endpoint["id"])
                    and deliveries(admin, endpoint["id"])[0]["attempts"] >= 1
                ),
                what="a failed attempt",
            )
            (pending,) = deliveries(admin, endpoint["id"])
            assert pending["state"] == "pending" and pending["lastError"]
    finally:
        server.stop()
    receiver.start()
    try:
        server = ServerProcess(tmp_path / "yard", env).start()
        try:
            with server.client() as admin:
                wait_for(lambda: receiver.at("later"), what="delivery after the restart")
                payload = verified(endpoint["secret"], receiver.at("later")[0])
                assert payload["runId"] == run["runId"] and payload["status"] == "completed"
                wait_for(lambda: deliveries(admin, endpoint["id"])[0]["state"] == "delivered")
        finally:
            server.stop()
        # The same endpoint on a server that no longer allows the loopback receiver.
        strict = {**env, "AGENTYARD_WEBHOOK_PRIVATE_HOSTS": "[]"}
        server = ServerProcess(tmp_path / "yard", strict).start()
        try:
            with server.client() as admin:
                run = create(admin, "echo")
                wait_status(admin, run["runId"], {"completed"})

                def refused() -> dict[str, Any] | None:
                    latest = deliveries(admin, endpoint["id"])[0]
                    ours = latest["runId"] == run["runId"] and latest["attempts"]
                    return latest if ours else None

                latest = wait_for(refused, what="a refused attempt")
                assert latest["lastError"].startswith("refused:")
                assert "must use https" in latest["lastError"]
                assert len(receiver.at("later")) == 1
        finally:
            server.stop()
    finally:
        receiver.stop()


@pytest.mark.postgres
def test_scaled_out_deliveries_are_jobs_on_the_workers(
    tmp_path: Path, pg_database: str, receiver: WebhookReceiver
) -> None:
    """PostgreSQL, an API process without workers and one worker: the first attempts are
    jobs deferred with the outbox rows (in order per endpoint), a retry is a job deferred
    again, and a redelivery is one more."""
    from agentyard.testing.harness import WorkerProcess

    env = yard_env(tmp_path, AGENTYARD_DATABASE_URL=pg_database)
    api = ServerProcess(tmp_path, env, args=("--no-workers",)).start()
    worker = WorkerProcess(env, tmp_path / "worker.log", concurrency=2).start()
    try:
        with api.client() as admin:
            every = register(admin, receiver.url("pg-all"))
            receiver.script["/pg-flaky"] = [500]
            flaky = register(admin, receiver.url("pg-flaky"), events=["completed"])
            run = create(admin, "echo")
            wait_status(admin, run["runId"], {"completed"})
            wait_for(lambda: len(receiver.at("pg-all")) >= 3, what="three deliveries")
            assert statuses(receiver, "pg-all", run["runId"], every["secret"]) == [
                "queued",
                "running",
                "completed",
            ]

            def delivered() -> list[dict[str, Any]]:
                shown = deliveries(admin, flaky["id"])
                return shown if shown and shown[0]["state"] == "delivered" else []

            (delivery,) = wait_for(delivered, what="the retried delivery")
            assert [e["statusCode"] for e in delivery["attemptLog"]] == [200, 500]
            r = admin.post(f"/api/v1/webhooks/{flaky['id']}/deliveries/{delivery['id']}/redeliver")
            assert r.status_code == 200, r.text
            wait_for(lambda: len(receiver.at("pg-flaky")) == 3, what="the redelivery")
            assert (
                statuses(receiver, "pg-flaky", run["runId"], flaky["secret"]) == ["completed"] * 3
            )
    finally:
        worker.stop()
        api.stop()


def test_signatures_match_the_reference_library() -> None:
    from datetime import UTC, datetime

    from agentyard.webhooks import signing

    secret = signing.new_secret()
    body = b'{"type":"run.completed"}'
    at = datetime(2026, 5, 19, 10, 0, 2, tzinfo=UTC)
    ours = signing.signature(secret, "msg_1", int(at.timestamp()), body)
    assert ours == Webhook(secret).sign("msg_1", at, body.decode())


def test_backoff_grows_with_jitter_and_stops_after_the_window() -> None:
    from datetime import UTC, datetime, timedelta

    from agentyard.webhooks.delivery import RetryPolicy

    policy = RetryPolicy(base_seconds=5, retry_for_seconds=86400)
    for attempts, nominal in [(1, 5), (2, 25), (3, 120), (4, 600), (5, 3600), (9, 3600)]:
        assert nominal * 0.8 <= policy.delay(attempts) <= nominal * 1.2
    created = datetime(2026, 1, 1, tzinfo=UTC)
    soon = created + timedelta(minutes=1)
    assert policy.next_attempt(created, 1, soon) is not None
    assert policy.next_attempt(created, 30, created + timedelta(hours=23, minutes=59)) is None


def test_url_rules_without_the_network() -> None:
    from agentyard.core.errors import InvalidInput
    from agentyard.webhooks.urls import WebhookUrls

    rules = WebhookUrls(["http://hooks.internal:8080", "private.example"])
    assert rules.parse("https://ci.example.com/x?k=1") == "https://ci.example.com/x?k=1"
    assert rules.parse("http://hooks.internal:8080/x")
    for bad in (
        "http://hooks.internal:9090/x",  # another port
        "http://private.example/x",  # allowed private, but not plain http
        "https://ci.example.com/x#frag",
        "file:///etc/passwd",
        "https://a\r\nb.example.com/",
    ):
        with pytest.raises(InvalidInput):
            rules.parse(bad)


def test_an_attempt_cut_short_by_a_crash_is_made_again(tmp_path: Path) -> None:
    """The server dies (SIGKILL) while a receiver holds an attempt: the next start lets go
    of the lease and sends the same message again."""
    receiver = WebhookReceiver(hang_seconds=20).start()
    receiver.script["/crash"] = ["hang"]
    env = yard_env(tmp_path / "yard", AGENTYARD_WEBHOOK_TIMEOUT_SECONDS="15")
    server = ServerProcess(tmp_path / "yard", env).start()
    try:
        with server.client() as admin:
            endpoint = register(admin, receiver.url("crash"), events=["completed"])
            run = create(admin, "echo")
            wait_status(admin, run["runId"], {"completed"})
            wait_for(lambda: receiver.at("crash"), what="the attempt that hangs")
        server.kill()
        server = ServerProcess(tmp_path / "yard", env).start()
        with server.client() as admin:
            wait_for(lambda: len(receiver.at("crash")) == 2, what="the attempt after the crash")
            first, second = receiver.at("crash")
            assert first.headers["webhook-id"] == second.headers["webhook-id"]
            assert verified(endpoint["secret"], second)["runId"] == run["runId"]
            wait_for(lambda: deliveries(admin, endpoint["id"])[0]["state"] == "delivered")
    finally:
        server.stop()
        receiver.stop()
