"""The command runtime on its own: an agent's output is read to its end, however slowly
the server stores it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agentyard.core import events as ev
from agentyard.core.events import Event
from agentyard.runtimes.base import RunSpec
from agentyard.runtimes.command import CommandRuntime, CommandSpec

LINES = 400


async def test_output_stored_slowly_is_not_cut_when_the_agent_exits(tmp_path: Path) -> None:
    """The agent prints everything and exits at once; storing each line takes 10 ms (a
    loaded database), so reading its output goes on for seconds after its exit. Every line
    arrives: the drain after the exit waits while output is still being read or stored."""
    runtime = CommandRuntime({"burst": CommandSpec(argv=["seq", "1", str(LINES)])})
    deltas: list[str] = []

    async def emit(*events: Event) -> None:
        for event in events:
            if event["type"] == ev.TEXT_DELTA:
                deltas.append(str(event["delta"]))
                await asyncio.sleep(0.01)

    spec = RunSpec(
        run_id="run-burst",
        chat_id="chat_burst",
        prompt="go",
        model="burst",
        workspace=tmp_path,
        state_dir=tmp_path,
    )
    outcome = await runtime.run(spec, emit)
    assert outcome.ok, outcome.error
    assert "".join(deltas) == "".join(f"{i}\n" for i in range(1, LINES + 1))
