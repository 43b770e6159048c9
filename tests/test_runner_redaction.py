"""The runner's redaction, in process, with a scripted runtime that streams a secret in
pieces: what is stored, the run's error, and the held-back text at finish and at cancel."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agentyard.core import events as ev
from agentyard.core.events import Event
from agentyard.core.redaction import REDACTED, RUNNING
from agentyard.core.status import RunStatus
from agentyard.runtimes.base import RUN_MARKER_ENV, Availability, Emit, RunOutcome, RunSpec
from agentyard.server import Agentyard
from agentyard.service import Continuation, NewTask
from agentyard.settings import Settings

SECRET = "npm_Zq8sT0ken-7f3a9c1eQ"


@dataclass
class Scripted:
    """Emits ``script`` one event per call, then fails with ``error`` (or waits forever)."""

    script: list[Event] = field(default_factory=list)
    error: str | None = None
    wait: bool = False
    name: str = "claude"
    seen: dict[str, str] = field(default_factory=dict)
    started: asyncio.Event = field(default_factory=asyncio.Event)

    def availability(self) -> Availability:
        return Availability(True, "scripted", None)

    async def run(self, spec: RunSpec, emit: Emit) -> RunOutcome:
        self.seen = dict(spec.env)
        for item in self.script:
            await emit(item)
        self.started.set()
        if self.wait:
            await asyncio.sleep(3600)
        return RunOutcome(ok=self.error is None, error=self.error)


@pytest.fixture
async def yard(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Agentyard, Scripted]]:
    runtime = Scripted()
    settings = Settings(
        data_dir=tmp_path / "data", database_url=database_url, queue_poll_seconds=0.05
    )
    app = Agentyard(settings, runtimes={"claude": runtime})
    await app.start()
    yield app, runtime
    await app.stop()


async def until(app: Agentyard, run_id: str, statuses: set[RunStatus]) -> None:
    for _ in range(300):
        run = await app.store.get_run(run_id)
        if run is not None and run.status in statuses:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{run_id} never reached {statuses}")


def deltas(events: list[dict[str, Any]], block: str) -> str:
    return "".join(e["delta"] for e in events if e.get("id") == block and "delta" in e)


async def test_streamed_pieces_error_and_held_text_are_redacted(
    yard: tuple[Agentyard, Scripted],
) -> None:
    app, runtime = yard
    said = f"say {SECRET} now"
    runtime.script = [
        {"type": ev.TEXT_START, "id": "t1"},
        *({"type": ev.TEXT_DELTA, "id": "t1", "delta": c} for c in said),
        {"type": ev.REASONING_START, "id": "r1"},
        {"type": ev.REASONING_DELTA, "id": "r1", "delta": f"think {SECRET[:9]}"},
        {"type": ev.REASONING_DELTA, "id": "r1", "delta": SECRET[9:]},
        {"type": ev.REASONING_END, "id": "r1"},
        *ev.tool_call("c1", "bash", {"command": f"npm publish --token {SECRET}"}),
        ev.tool_output("c1", "bash", {"stdout": [f"used {SECRET}"]}),
        {"type": ev.TEXT_DELTA, "id": "t1", "delta": " and " + SECRET[:6]},
    ]
    runtime.error = f"failed: {SECRET}"
    run = await app.service.create_task(
        "u", NewTask(prompt="p", env={"NPM_TOKEN": SECRET, "SHORT": "abc"})
    )
    await until(app, run.run_id, {RunStatus.FAILED})
    assert runtime.seen == {"NPM_TOKEN": SECRET, "SHORT": "abc", RUN_MARKER_ENV: run.run_id}

    stored = [s.data for s in await app.events.read(run.run_id)]
    assert SECRET not in json.dumps(stored)
    # The text block's pieces, joined, are the redacted text; its unfinished tail (a
    # possible start of the secret) was released at the tool call, the last one at finish.
    assert deltas(stored, "t1") == f"say {REDACTED} now and {SECRET[:6]}"
    assert deltas(stored, "r1") == f"think {REDACTED}"
    assert [e["type"] for e in stored[-3:]] == [ev.TEXT_DELTA, ev.ERROR, ev.FINISH]
    assert stored[-2]["errorText"] == f"failed: {REDACTED}"
    assert any(e.get("input") == {"command": f"npm publish --token {REDACTED}"} for e in stored)
    after = await app.store.get_run(run.run_id)
    assert after is not None and after.error == f"failed: {REDACTED}"
    view = await app.service.get_task("u", run.run_id)
    parts = json.dumps([m.parts for m in view.messages])
    assert SECRET not in parts and f"say {REDACTED} now" in parts
    for _ in range(100):  # forgotten once the run has ended
        if not RUNNING.redactor:
            break
        await asyncio.sleep(0.01)
    assert not RUNNING.redactor

    chat = await app.store.get_chat(run.chat_id)
    assert chat is not None and chat.env_encrypted and SECRET not in chat.env_encrypted
    assert SECRET not in repr(chat)

    # A follow-up merges its variables over the chat's and the agent gets them all.
    runtime.script, runtime.error = [], None
    follow = await app.service.continue_task(
        "u", run.run_id, Continuation(prompt="again", env={"SHORT": "abcd", "NEW": "v"})
    )
    await until(app, follow.run_id, {RunStatus.COMPLETED})
    assert runtime.seen == {
        "NPM_TOKEN": SECRET,
        "SHORT": "abcd",
        "NEW": "v",
        RUN_MARKER_ENV: follow.run_id,
    }


async def test_cancel_releases_held_text_and_forgets_the_secrets(
    yard: tuple[Agentyard, Scripted],
) -> None:
    app, runtime = yard
    runtime.script = [
        {"type": ev.TEXT_START, "id": "t1"},
        {"type": ev.TEXT_DELTA, "id": "t1", "delta": f"{SECRET} then {SECRET[:8]}"},
    ]
    runtime.wait = True
    run = await app.service.create_task("u", NewTask(prompt="p", env={"NPM_TOKEN": SECRET}))
    await asyncio.wait_for(runtime.started.wait(), 15)
    assert RUNNING.redactor.redact(f"log {SECRET}") == f"log {REDACTED}"  # for the logs
    # Events reach the table through the run's writer, in order, a moment after emit.
    for _ in range(200):
        stored = [s.data for s in await app.events.read(run.run_id)]
        if deltas(stored, "t1"):
            break
        await asyncio.sleep(0.02)
    assert deltas(stored, "t1") == f"{REDACTED} then "  # the possible start is held back
    assert (await app.service.cancel("u", run.run_id)).success
    stored = [s.data for s in await app.events.read(run.run_id)]
    assert deltas(stored, "t1") == f"{REDACTED} then {SECRET[:8]}"
    assert stored[-1]["type"] == ev.FINISH and stored[-1]["status"] == "cancelled"
    assert not RUNNING.redactor


async def test_variables_that_cannot_be_decrypted_fail_the_run(
    yard: tuple[Agentyard, Scripted],
) -> None:
    """Sealed with another key: the run fails saying so, and the agent never starts."""
    app, runtime = yard
    run = await app.service.create_task("u", NewTask(prompt="p", env={"NPM_TOKEN": SECRET}))
    await until(app, run.run_id, {RunStatus.FAILED, RunStatus.COMPLETED})
    runtime.seen = {}
    await app.store.update_chat(run.chat_id, env_encrypted="not-a-fernet-token")
    follow = await app.service.continue_task("u", run.run_id, Continuation(prompt="again"))
    await until(app, follow.run_id, {RunStatus.FAILED, RunStatus.COMPLETED})
    after = await app.store.get_run(follow.run_id)
    assert after is not None and after.status is RunStatus.FAILED
    assert "cannot be decrypted" in (after.error or "") and runtime.seen == {}
