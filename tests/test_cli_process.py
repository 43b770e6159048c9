"""The Claude SDK's CLI process started from a thread: an anyio Process that behaves as
anyio's own (stdin, stdout, stderr, signals, exit), on asyncio's loop and on uvloop."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from subprocess import DEVNULL, PIPE
from typing import Any

import anyio
import pytest
import uvloop

from agentyard.runtimes import cli_process
from agentyard.runtimes.cli_process import CliProcess


def on_both_loops(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())
    uvloop.run(test())


async def read_all(stream: Any) -> bytes:
    out = bytearray()
    with pytest.raises(anyio.EndOfStream):
        while True:
            out.extend(await stream.receive())
    return bytes(out)


def test_a_round_trip_through_stdin_and_stdout() -> None:
    """20 MB through the CLI's stdin and back (a full pipe waits, never blocks the loop);
    stderr apart; the exit status."""

    async def test() -> None:
        code = (
            "import sys\n"
            "data = sys.stdin.buffer.read()\n"
            "sys.stdout.buffer.write(data)\n"
            "sys.stderr.write('read %d' % len(data))\n"
            "sys.exit(3)\n"
        )
        proc = await cli_process.open_process(
            [sys.executable, "-c", code], stdin=PIPE, stdout=PIPE, stderr=PIPE, user=None
        )
        assert isinstance(proc, CliProcess)
        data = os.urandom(20_000_000)

        async def feed() -> None:
            await proc.stdin.send(data)
            await proc.stdin.aclose()

        writer = asyncio.ensure_future(feed())
        out, err = await asyncio.gather(read_all(proc.stdout), read_all(proc.stderr))
        await writer
        assert out == data and err == b"read 20000000"
        assert await proc.wait() == 3 and proc.returncode == 3
        with pytest.raises(anyio.ClosedResourceError):
            await proc.stdin.send(b"more")

    on_both_loops(test)


def test_terminate_kill_and_a_reaped_process() -> None:
    async def test() -> None:
        proc = await cli_process.open_process(
            ["sh", "-c", "trap 'exit 7' TERM; echo ready; while :; do sleep 0.05; done"],
            stdin=PIPE, stdout=PIPE, stderr=PIPE,
        )  # fmt: skip
        assert await proc.stdout.receive() == b"ready\n"
        proc.terminate()
        assert await proc.wait() == 7
        proc.kill()  # reaped already: nothing is signalled (its pid may be another's)
        stuck = await cli_process.open_process(
            ["sleep", "60"], stdin=PIPE, stdout=PIPE, stderr=PIPE
        )
        stuck.kill()
        assert await stuck.wait() == -signal.SIGKILL
        await stuck.aclose()

    on_both_loops(test)


def test_a_missing_binary_is_file_not_found() -> None:
    async def test() -> None:
        with pytest.raises(FileNotFoundError):
            await cli_process.open_process(
                ["/nonexistent/claude"], stdin=PIPE, stdout=PIPE, stderr=PIPE
            )

    on_both_loops(test)


def test_anything_else_goes_to_anyio() -> None:
    async def test() -> None:
        proc = await cli_process.open_process(["true"], stdin=DEVNULL, stdout=PIPE, stderr=DEVNULL)
        assert not isinstance(proc, CliProcess)
        assert await proc.wait() == 0

    on_both_loops(test)


def test_only_the_sdks_transport_module_sees_it() -> None:
    import types

    module = types.ModuleType("transport")
    module.anyio = anyio  # type: ignore[attr-defined]
    cli_process.install(module)
    cli_process.install(module)  # idempotent
    shim = module.anyio  # type: ignore[attr-defined]
    assert shim.open_process is cli_process.open_process
    assert shim.Lock is anyio.Lock and shim.to_thread is anyio.to_thread
    assert anyio.open_process is not cli_process.open_process
