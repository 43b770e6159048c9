"""Control over tasks: idempotent creates, limits and budgets, reasons (statusDetail), provider
errors surfacing at once, per-user limits, and create-time validation. Real server processes,
the command runtime and the real Claude CLI against the scripted model."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentyard.core import idempotency
from agentyard.core.clock import utcnow
from agentyard.core.models import Message, Run
from agentyard.store.store import Store
from agentyard.testing.harness import ServerProcess, running_server, wait_status
from agentyard.testing.scripted_model import ScriptedModelServer
from records import queued_run

COMMANDS = {
    "echo": {"argv": ["sh", "-c", 'echo "said: $AGENTYARD_PROMPT"']},
    # Some work first, then far longer than any limit of these tests.
    "slow": {"argv": ["sh", "-c", "echo started; echo partial > work.txt; sleep 120"]},
}

SCRIPT: dict[str, Any] = {
    "scenarios": [
        # Every request costs $3 (a million input tokens of claude-sonnet-4-5).
        {
            "match": "^expensive",
            "turns": [
                {
                    "text": "Thinking hard.",
                    "tool_calls": [{"name": "Bash", "input": {"command": "echo one"}}],
                    "usage": {"input_tokens": 1_000_000},
                },
                {"delay": 30, "text": "never reached", "usage": {"input_tokens": 1_000_000}},
            ],
        },
        {
            "match": "^rejected",
            "turns": [{"fail_first": {"times": 1000, "status": 401}, "text": "no"}],
        },
        {
            "match": "^overloaded once",
            "turns": [
                {
                    "fail_first": {"times": 1, "status": 529},
                    "error": "Overloaded",
                    "text": "Fine after all.",
                }
            ],
        },
        {"turns": [{"text": "ok"}]},
    ]
}


@pytest.fixture(scope="module")
def model() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer(SCRIPT) as server:
        yield server


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, model: ScriptedModelServer
) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("yard"),
        {
            "AGENTYARD_COMMANDS": json.dumps(COMMANDS),
            "AGENTYARD_MAX_CONCURRENT_RUNS": "4",
            "AGENTYARD_TASK_MAX_DURATION_CAP_SECONDS": "3600",
            "ANTHROPIC_BASE_URL": model.url,
            "ANTHROPIC_API_KEY": "sk-ant-scripted",
            # The CLI's own retries (of a 529) stay on: the server must make them visible.
            "AGENTYARD_CLAUDE_ENV": '{"CLAUDE_CODE_MAX_RETRIES": "3"}',
        },
    ) as proc:
        yield proc


def task(prompt: str = "hi", command: str = "echo", **extra: Any) -> dict[str, Any]:
    return {"prompt": prompt, "agent": "command", "model": command, **extra}


def runs_of(client: httpx.Client) -> list[str]:
    return [t["runId"] for t in client.get("/api/v1/tasks", params={"limit": 100}).json()["tasks"]]


# -- idempotency ---------------------------------------------------------------------------


def test_the_same_key_and_body_replay_the_first_response(client: httpx.Client) -> None:
    headers = {"Idempotency-Key": "create-1"}
    first = client.post("/api/v1/tasks", json=task("once"), headers=headers)
    assert first.status_code == 200 and "idempotent-replayed" not in first.headers
    wait_status(client, first.json()["runId"], {"completed"})
    again = client.post("/api/v1/tasks", json=task("once"), headers=headers)
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()  # the first response, even though the run moved on
    assert runs_of(client).count(first.json()["runId"]) == 1
    assert sum(1 for r in runs_of(client) if r == first.json()["runId"]) == 1


def test_the_same_key_with_another_body_is_a_422_naming_the_fields(client: httpx.Client) -> None:
    headers = {"Idempotency-Key": "create-2"}
    assert client.post("/api/v1/tasks", json=task("one"), headers=headers).status_code == 200
    before = runs_of(client)
    r = client.post("/api/v1/tasks", json=task("two", title="t"), headers=headers)
    assert r.status_code == 422
    assert "'prompt'" in r.json()["error"] and "'title'" in r.json()["error"]
    assert "'model'" not in r.json()["error"]
    assert runs_of(client) == before
    # Another route with the same key is a mismatch too.
    run_id = before[0]
    other = client.post(f"/api/v1/tasks/{run_id}/continue", json={"prompt": "one"}, headers=headers)
    assert other.status_code == 422 and "POST /api/v1/tasks" in other.json()["error"]


def test_concurrent_requests_with_one_key_make_one_run(client: httpx.Client) -> None:
    """Fired at once: one run; the others get its response replayed or a 409 (in flight)."""
    before = set(runs_of(client))
    headers = {"Idempotency-Key": "create-3"}
    with ThreadPoolExecutor(6) as pool:
        answers = list(
            pool.map(
                lambda _: client.post("/api/v1/tasks", json=task("race"), headers=headers),
                range(6),
            )
        )
    codes = [a.status_code for a in answers]
    assert set(codes) <= {200, 409} and 200 in codes, codes
    made = {a.json()["runId"] for a in answers if a.status_code == 200}
    assert len(made) == 1
    for a in answers:
        if a.status_code == 409:
            assert "in flight" in a.json()["error"]
    assert set(runs_of(client)) - before == made


def test_keys_belong_to_their_user(server: ServerProcess, client: httpx.Client) -> None:
    headers = {"Idempotency-Key": "shared-key"}
    mine = client.post("/api/v1/tasks", json=task("mine"), headers=headers).json()
    carol_key = server.cli("keys", "create", "--name", "carol", "--user", "carol").strip()
    with server.client(carol_key) as carol:
        theirs = carol.post("/api/v1/tasks", json=task("theirs"), headers=headers)
        assert theirs.status_code == 200 and "idempotent-replayed" not in theirs.headers
        assert theirs.json()["runId"] != mine["runId"]


def test_continue_with_a_key_is_replayed(client: httpx.Client) -> None:
    first = client.post("/api/v1/tasks", json=task("base")).json()
    wait_status(client, first["runId"], {"completed"})
    headers = {"Idempotency-Key": "follow-1"}
    path = f"/api/v1/tasks/{first['runId']}/continue"
    one = client.post(path, json={"prompt": "more"}, headers=headers)
    two = client.post(path, json={"prompt": "more"}, headers=headers)
    assert one.status_code == two.status_code == 200
    assert two.json() == one.json() and two.headers["idempotent-replayed"] == "true"
    chat = client.get(f"/api/v1/tasks/{one.json()['runId']}").json()
    assert [m["role"] for m in chat["messages"]] == ["user", "assistant"] * 2


def test_a_key_expires_after_24_hours(server: ServerProcess, client: httpx.Client) -> None:
    headers = {"Idempotency-Key": "old-key"}
    first = client.post("/api/v1/tasks", json=task("yesterday"), headers=headers).json()
    aged = (datetime.now(UTC) - timedelta(hours=25)).replace(tzinfo=None)
    with sqlite3.connect(server.data_dir / "agentyard.db") as db:
        db.execute("UPDATE idempotency_keys SET created_at = ? WHERE key = ?", (aged, "old-key"))
    again = client.post("/api/v1/tasks", json=task("today"), headers=headers)
    assert again.status_code == 200 and "idempotent-replayed" not in again.headers
    assert again.json()["runId"] != first["runId"]


@pytest.mark.parametrize("key", [b"", b"x" * 256, b"tab\there", "é".encode()])
def test_a_bad_key_is_a_400(client: httpx.Client, key: bytes) -> None:
    before = runs_of(client)
    r = client.post("/api/v1/tasks", json=task(), headers={"Idempotency-Key": key})
    assert r.status_code == 400 and "Idempotency-Key" in r.json()["error"]
    assert runs_of(client) == before


def _run(user: str = "alice") -> tuple[Run, Message]:
    return queued_run("chat_x", user, agent="command", model="echo", prompt="p")


def _receipt(run: Run, key: str = "k") -> dict[str, Any]:
    return {
        "user_id": run.user_id,
        "key": key,
        "route": "POST /api/v1/tasks",
        "fingerprint": {},
        "status_code": 200,
        "response_sealed": "sealed",
        "run_id": run.run_id,
        "created_at": utcnow(),
    }


async def test_the_key_record_and_its_run_commit_together(store: Store) -> None:
    """A key taken by another request leaves nothing of the second run; a run whose
    transaction fails leaves no key behind."""
    from agentyard.core.models import Chat

    first, message = _run()
    chat = Chat(chat_id="chat_x", user_id="alice", created_at=utcnow())
    await store.create_run(first, message, new_chat=chat, receipt=_receipt(first))
    second, message2 = _run()
    second.chat_id = message2.chat_id = "chat_y"
    chat_y = Chat(chat_id="chat_y", user_id="alice", created_at=utcnow())
    with pytest.raises(idempotency.KeyInUse):
        await store.create_run(second, message2, new_chat=chat_y, receipt=_receipt(second))
    assert await store.get_run(second.run_id) is None and await store.get_chat("chat_y") is None

    async def crash(*_: Any) -> None:
        raise RuntimeError("the queue failed mid-insert")

    third, message3 = _run()
    third.chat_id = message3.chat_id = "chat_z"
    chat_z = Chat(chat_id="chat_z", user_id="alice", created_at=utcnow())
    with pytest.raises(RuntimeError):
        await store.create_run(
            third, message3, new_chat=chat_z, on_insert=crash, receipt=_receipt(third, "k3")
        )
    assert await store.get_receipt("alice", "k3") is None
    assert await store.get_run(third.run_id) is None
    kept = await store.get_receipt("alice", "k")
    assert kept is not None and kept["run_id"] == first.run_id


async def test_records_past_their_lifetime_are_purged(store: Store) -> None:
    from agentyard.core.models import Chat

    old, message = _run()
    chat = Chat(chat_id="chat_x", user_id="alice", created_at=utcnow())
    receipt = _receipt(old, "old") | {"created_at": utcnow() - timedelta(hours=25)}
    await store.create_run(old, message, new_chat=chat, receipt=receipt)
    fresh, message2 = _run()
    fresh.chat_id = message2.chat_id = "chat_y"
    chat_y = Chat(chat_id="chat_y", user_id="alice", created_at=utcnow())
    await store.create_run(fresh, message2, new_chat=chat_y, receipt=_receipt(fresh, "new"))
    assert await store.get_receipt("alice", "old") is None  # past its lifetime: not used
    assert await store.purge_receipts() == 1
    assert await store.get_receipt("alice", "new") is not None


# -- limits, budgets and reasons ----------------------------------------------------------


def test_max_duration_stops_the_agent_and_keeps_its_work(client: httpx.Client) -> None:
    body = client.post("/api/v1/tasks", json=task("work", "slow", maxDuration=2)).json()
    status = wait_status(client, body["runId"], {"completed", "failed"}, timeout=60)
    assert status["status"] == "failed"
    assert status["statusDetail"] == "maxDuration reached"
    assert "maxDuration" in status["error"] and "saved" in status["error"]
    view = client.get(f"/api/v1/tasks/{body['runId']}").json()
    assert view["maxDuration"] == 2
    assert [f["path"] for f in view["diffStats"]["files"]] == ["work.txt"]
    assert "started" in json.dumps(view["messages"][1]["parts"])
    started = datetime.fromisoformat(status["startedAt"].replace("Z", "+00:00"))
    ended = datetime.fromisoformat(status["completedAt"].replace("Z", "+00:00"))
    assert (ended - started).total_seconds() < 30  # not the command's 120 s


def test_max_cost_stops_a_claude_run_at_its_budget(client: httpx.Client) -> None:
    body = client.post(
        "/api/v1/tasks", json={"prompt": "expensive analysis", "agent": "claude", "maxCostUsd": 1}
    ).json()
    status = wait_status(client, body["runId"], {"completed", "failed"}, timeout=90)
    assert status["status"] == "failed", status
    assert status["statusDetail"] == "maxCostUsd reached"
    assert "maxCostUsd" in status["error"] and "cost $3.00" in status["error"]
    view = client.get(f"/api/v1/tasks/{body['runId']}").json()
    assert view["costUsd"] == pytest.approx(3.0, rel=0.01)


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("maxDuration", -1, "greater than 0"),
        ("maxDuration", "10", "must be a number"),
        ("maxDuration", True, "must be a number"),
        ("maxDuration", 7200, "at most 3600"),
        ("maxCostUsd", 0, "greater than 0"),
    ],
)
def test_bad_limits_are_a_400(client: httpx.Client, field: str, value: Any, needle: str) -> None:
    before = runs_of(client)
    r = client.post("/api/v1/tasks", json=task(**{field: value}))
    assert r.status_code == 400 and field in r.json()["error"] and needle in r.json()["error"]
    assert runs_of(client) == before


def test_status_detail_while_running_and_when_ended(client: httpx.Client) -> None:
    slow = client.post("/api/v1/tasks", json=task("wait", "slow")).json()["runId"]
    wait_status(client, slow, {"running"})
    deadline = time.monotonic() + 20
    detail = None
    while time.monotonic() < deadline:
        detail = client.get(f"/api/v1/tasks/{slow}/status").json()["statusDetail"]
        if detail == "agent working":
            break
        time.sleep(0.1)
    assert detail == "agent working"
    client.patch(f"/api/v1/tasks/{slow}", json={"action": "cancel"})
    assert client.get(f"/api/v1/tasks/{slow}").json()["statusDetail"] == "cancelled by user"
    done = client.post("/api/v1/tasks", json=task()).json()["runId"]
    assert wait_status(client, done, {"completed"})["statusDetail"] == "completed"


def test_a_rejected_key_fails_the_run_at_once(client: httpx.Client) -> None:
    started = time.monotonic()
    body = client.post("/api/v1/tasks", json={"prompt": "rejected", "agent": "claude"}).json()
    status = wait_status(client, body["runId"], {"completed", "failed"}, timeout=60)
    assert time.monotonic() - started < 45
    assert status["status"] == "failed"
    assert status["statusDetail"] == "model rejected the API key"
    assert "ANTHROPIC_API_KEY" in status["error"] and "401" in status["error"]


def test_an_overloaded_model_retry_is_an_event(client: httpx.Client) -> None:
    body = client.post("/api/v1/tasks", json={"prompt": "overloaded once", "agent": "claude"})
    run_id = body.json()["runId"]
    status = wait_status(client, run_id, {"completed", "failed"}, timeout=90)
    assert status["status"] == "completed", status
    events = client.get(f"/api/v1/tasks/{run_id}/logs").json()["events"]
    retries = [e for e in events if e["type"] == "data-retry"]
    assert retries and retries[0]["data"] == {"provider": "anthropic", "status": 529, "attempt": 2}


# -- create-time validation ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"prompt": "x", "promt": "typo"}, "unknown field 'promt'"),
        ({"prompt": "x", "installDependencies": True}, "'installDependencies' is not supported"),
        ({"prompt": "x", "agent": "codex", "model": "claude-sonnet-4-5"}, "Claude model"),
        ({"prompt": "x", "agent": "codex", "model": "gemini-2.5-pro"}, "Gemini model"),
        ({"prompt": "x", "agent": "command", "model": "nope"}, "unknown command"),
        (
            {"prompt": "x", "selectedAgents": [{"agent": "claude", "modle": "m"}, {}]},
            "selectedAgents[0].modle",
        ),
    ],
)
def test_bad_create_bodies_are_a_400_naming_the_field(
    client: httpx.Client, body: dict[str, Any], needle: str
) -> None:
    before = runs_of(client)
    r = client.post("/api/v1/tasks", json=body)
    assert r.status_code == 400 and needle in r.json()["error"], r.text
    assert runs_of(client) == before


def test_an_unsupported_option_asked_off_is_accepted(client: httpx.Client) -> None:
    r = client.post("/api/v1/tasks", json=task(installDependencies=False))
    assert r.status_code == 200, r.text


def test_an_unknown_continue_field_is_a_400(client: httpx.Client) -> None:
    run_id = client.post("/api/v1/tasks", json=task()).json()["runId"]
    r = client.post(f"/api/v1/tasks/{run_id}/continue", json={"prompt": "x", "repoUrl": "y"})
    assert r.status_code == 400 and "unknown field 'repoUrl'" in r.json()["error"]


# -- per-user limits, and where a queued run waits ------------------------------------------


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("limited"),
        {
            "AGENTYARD_COMMANDS": json.dumps(COMMANDS),
            "AGENTYARD_MAX_CONCURRENT_RUNS": "2",
            "AGENTYARD_USER_MAX_RUNNING_RUNS": "1",
            "AGENTYARD_USER_MAX_QUEUED_RUNS": "2",
        },
    ) as proc:
        yield proc


def test_per_user_limits_queue_then_refuse(limited: ServerProcess, tmp_path: Path) -> None:
    dave_key = limited.cli("keys", "create", "--name", "dave", "--user", "dave").strip()
    with limited.client() as alice, limited.client(dave_key) as dave:
        first = alice.post("/api/v1/tasks", json=task("a", "slow")).json()["runId"]
        wait_status(alice, first, {"running"})
        second = alice.post("/api/v1/tasks", json=task("b", "slow")).json()["runId"]
        waiting = alice.get(f"/api/v1/tasks/{second}/status").json()
        assert waiting["status"] == "queued"
        assert waiting["statusDetail"] == (
            "waiting: 1 of your runs are executing (at most 1 at once)"
        )
        # Another user's task is not held up by alice's.
        other = dave.post("/api/v1/tasks", json=task("d")).json()["runId"]
        assert wait_status(dave, other, {"completed"}, timeout=30)["status"] == "completed"
        third = alice.post("/api/v1/tasks", json=task("c")).json()["runId"]
        before = runs_of(alice)
        refused = alice.post("/api/v1/tasks", json=task("d"))
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
        assert "queued" in refused.json()["error"]
        assert runs_of(alice) == before
        assert alice.get(f"/api/v1/tasks/{second}/status").json()["status"] == "queued"
        alice.patch(f"/api/v1/tasks/{first}", json={"action": "cancel"})
        wait_status(alice, second, {"running"})
        alice.patch(f"/api/v1/tasks/{second}", json={"action": "cancel"})
        assert wait_status(alice, third, {"completed"}, timeout=30)["status"] == "completed"


def test_a_queued_run_says_where_it_waits(limited: ServerProcess) -> None:
    keys = [limited.cli("keys", "create", "--name", n, "--user", n).strip() for n in ("eve", "fay")]
    with limited.client(keys[0]) as eve, limited.client(keys[1]) as fay:
        # Both slots taken (one run each: the per-user cap is 1), then eve queues one more.
        busy = [eve.post("/api/v1/tasks", json=task("x", "slow")).json()["runId"]]
        busy.append(fay.post("/api/v1/tasks", json=task("y", "slow")).json()["runId"])
        for run_id, c in zip(busy, (eve, fay), strict=True):
            wait_status(c, run_id, {"running"})
        with limited.client() as admin:
            waiting = admin.post("/api/v1/tasks", json=task("z")).json()["runId"]
            detail = admin.get(f"/api/v1/tasks/{waiting}/status").json()["statusDetail"]
            assert detail is not None and detail.startswith(
                "waiting for a free slot: position 1 of"
            )
            eve.patch(f"/api/v1/tasks/{busy[0]}", json={"action": "cancel"})
            assert wait_status(admin, waiting, {"completed"}, timeout=30)["status"] == "completed"
        fay.patch(f"/api/v1/tasks/{busy[1]}", json={"action": "cancel"})
