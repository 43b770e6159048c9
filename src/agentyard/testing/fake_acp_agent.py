"""A scripted ACP agent, written with the SDK's agent side (``acp.run_agent``), for tests.

``python -m agentyard.testing.fake_acp_agent SCRIPT.json`` speaks ACP on stdio. The script:

``{"protocolVersion": 1, "authRequired": false, "loadSession": false, "resume": false,
"log": "/path/log.jsonl", "turns": [{"match": REGEX?, "steps": [STEP, ...],
"stopReason": "end_turn"}]}``

A prompt plays the first turn whose ``match`` is found in its text (or the first without
``match``). Steps, in order: ``{"update": {...}}`` (sent as is: unknown kinds and fields
welcome; ``"session": "other"`` sends it for another session id), ``{"big": N}`` (a text
chunk of N characters, one line on the wire), ``{"permission": {"toolCall": {...},
"options": [...]}}`` (logged with its outcome), ``{"sleep": s}``, ``{"hang": true}`` (never
answers), ``{"waitCancel": true}`` (until ``session/cancel``), ``{"crash": code}`` (exits at
once). ``{"early": {...}}`` on the script sends an update before answering ``session/new``;
``{"replay": [...]}`` updates are replayed by ``session/load`` (before and after answering).
Every request received is appended to ``log`` as a JSON line.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import uuid
from pathlib import Path
from typing import Any

import acp
from acp.schema import (
    AgentCapabilities,
    InitializeResponse,
    LoadSessionResponse,
    NewSessionResponse,
    ResumeSessionResponse,
    SessionCapabilities,
    SessionResumeCapabilities,
)


class FakeAgent:
    def __init__(self, script: dict[str, Any]) -> None:
        self.script = script
        self.conn: Any = None
        self.cancelled = asyncio.Event()

    def on_connect(self, conn: Any) -> None:
        self.conn = conn

    def log(self, kind: str, **data: Any) -> None:
        path = self.script.get("log")
        if path:
            with open(path, "a") as fh:
                fh.write(json.dumps({"kind": kind, **data}, default=str) + "\n")

    async def notify(self, session_id: str, update: Any) -> None:
        await self.conn._conn.send_notification(
            "session/update", {"sessionId": session_id, "update": update}
        )

    async def initialize(self, protocol_version: int, **kwargs: Any) -> InitializeResponse:
        caps = kwargs.get("client_capabilities")
        self.log(
            "initialize",
            protocolVersion=protocol_version,
            clientCapabilities=caps.model_dump(by_alias=True) if caps is not None else None,
        )
        resume = SessionCapabilities(resume=SessionResumeCapabilities())
        return InitializeResponse(
            protocol_version=int(self.script.get("protocolVersion", 1)),
            agent_capabilities=AgentCapabilities(
                load_session=bool(self.script.get("loadSession")),
                session_capabilities=resume if self.script.get("resume") else None,
            ),
            auth_methods=[{"id": "fake-key", "name": "Fake key"}],
        )

    async def authenticate(self, method_id: str, **kwargs: Any) -> None:
        self.log("authenticate", methodId=method_id)
        self.script["authRequired"] = False

    async def new_session(self, cwd: str, **kwargs: Any) -> NewSessionResponse:
        self.log("new_session", cwd=cwd)
        if self.script.get("authRequired"):
            raise acp.RequestError.auth_required()
        session_id = "fake-" + uuid.uuid4().hex[:8]
        if self.script.get("early"):
            await self.notify(session_id, self.script["early"])
        return NewSessionResponse(session_id=session_id)

    async def load_session(self, cwd: str, session_id: str, **kwargs: Any) -> LoadSessionResponse:
        self.log("load_session", sessionId=session_id)
        for update in self.script.get("replay", []):
            await self.notify(session_id, update)

        async def late() -> None:  # as Gemini does: more history after the answer
            await asyncio.sleep(0.05)
            for update in self.script.get("replay", []):
                await self.notify(session_id, update)

        asyncio.get_running_loop().create_task(late())
        return LoadSessionResponse()

    async def resume_session(
        self, session_id: str, cwd: str, **kwargs: Any
    ) -> ResumeSessionResponse:
        self.log("resume_session", sessionId=session_id)
        return ResumeSessionResponse()

    async def cancel(self, session_id: str, **kwargs: Any) -> None:
        self.log("cancel", sessionId=session_id)
        self.cancelled.set()

    async def prompt(self, session_id: str, prompt: list[Any], **kwargs: Any) -> Any:
        text = " ".join(getattr(block, "text", "") for block in prompt)
        self.log("prompt", sessionId=session_id, text=text)
        turn = self._turn(text)
        for step in turn.get("steps", []):
            await self._step(session_id, step)
        return {"stopReason": turn.get("stopReason", "end_turn"), **turn.get("extra", {})}

    def _turn(self, text: str) -> dict[str, Any]:
        default: dict[str, Any] | None = None
        for turn in self.script.get("turns", []):
            match = turn.get("match")
            if match is None:
                default = default or turn
            elif re.search(match, text):
                return dict(turn)
        return dict(default or {"steps": []})

    async def _step(self, session_id: str, step: dict[str, Any]) -> None:
        if "update" in step:
            target = step.get("session") or session_id
            await self.notify(target, step["update"])
        elif "big" in step:
            content = {"type": "text", "text": "x" * int(step["big"])}
            chunk = {"sessionUpdate": "agent_message_chunk", "content": content}
            await self.notify(session_id, chunk)
        elif "permission" in step:
            request = {"sessionId": session_id, **step["permission"]}
            answer = await self.conn._conn.send_request("session/request_permission", request)
            self.log("permission", outcome=answer.get("outcome") if answer else None)
        elif "sleep" in step:
            await asyncio.sleep(float(step["sleep"]))
        elif step.get("hang"):
            await asyncio.Event().wait()
        elif step.get("waitCancel"):
            await self.cancelled.wait()
        elif "crash" in step:
            print("fake agent: crashing as scripted", file=sys.stderr, flush=True)
            os._exit(int(step["crash"]))


def main() -> None:
    script = json.loads(Path(sys.argv[1]).read_text())
    agent = FakeAgent(script)
    # session/resume is on the SDK's unstable list (0.12): the fake agent offers it anyway.
    asyncio.run(acp.run_agent(agent, use_unstable_protocol=True))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
