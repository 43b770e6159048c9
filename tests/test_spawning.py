"""Agent processes started from a thread (``start_process``): their output read to the end on
the event loop, their stdin fed, their exit noticed, and no descriptor lost or closed twice,
on asyncio's own loop and on uvloop (the server's), with many started at once."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
import uvloop

from agentyard.core.spawning import Process, start_process

T = TypeVar("T")
ENV = {"PATH": os.environ.get("PATH", os.defpath)}
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


def on_loop(name: str, main: Callable[[], Awaitable[T]]) -> T:
    with asyncio.Runner(loop_factory=LOOPS[name]) as runner:
        return runner.run(main())  # type: ignore[arg-type]


async def finish(proc: Process) -> tuple[int, bytes, bytes]:
    assert proc.stdout is not None and proc.stderr is not None
    out, err = await asyncio.gather(proc.stdout.read(), proc.stderr.read())
    return await asyncio.wait_for(proc.wait(), 30), out, err


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("loop", LOOPS)
def test_many_at_once_each_read_to_the_end_with_its_exit_code(loop: str) -> None:
    async def main() -> list[tuple[int, bytes, bytes]]:
        async def one(i: int) -> tuple[int, bytes, bytes]:
            argv = ["sh", "-c", f"echo out {i}; printf 'err {i}' >&2; exit {i % 5}"]
            return await finish(await start_process(argv, cwd=None, env=ENV))

        before = open_fds()  # on the running loop (uvloop keeps descriptors of its own)
        results = await asyncio.gather(*(one(i) for i in range(40)))
        await asyncio.sleep(0)  # the pipes' connection_lost callbacks
        assert open_fds() == before  # every pipe and pidfd closed, none twice
        return results

    results = on_loop(loop, main)
    assert results == [(i % 5, f"out {i}\n".encode(), f"err {i}".encode()) for i in range(40)]


@pytest.mark.parametrize("loop", LOOPS)
def test_stdin_is_fed_and_a_child_that_never_reads_it_still_ends(loop: str) -> None:
    data = os.urandom(3 * 1024 * 1024)  # more than a pipe holds

    async def main() -> tuple[tuple[int, bytes, bytes], tuple[int, bytes, bytes]]:
        counted = await finish(
            await start_process(["wc", "-c"], cwd=None, env=ENV, stdin_data=data)
        )
        ignored = await finish(await start_process(["true"], cwd=None, env=ENV, stdin_data=data))
        return counted, ignored

    counted, ignored = on_loop(loop, main)
    assert counted[0] == 0 and counted[1].strip() == str(len(data)).encode()
    assert ignored == (0, b"", b"")


@pytest.mark.parametrize("loop", LOOPS)
def test_output_larger_than_the_reader_buffer_arrives_whole(loop: str) -> None:
    """The reader pauses the pipe while its buffer is full and resumes it: nothing is lost."""

    async def main() -> int:
        argv = ["head", "-c", "20000000", "/dev/zero"]
        proc = await start_process(argv, cwd=None, env=ENV, limit=4096)
        assert proc.stdout is not None
        total = 0
        while chunk := await proc.stdout.read(1000):
            total += len(chunk)
            if total % 1_000_000 < 1000:
                await asyncio.sleep(0.001)  # a slow consumer now and then
        assert await proc.wait() == 0
        return total

    assert on_loop(loop, main) == 20_000_000


def test_a_command_that_cannot_start_raises_and_leaves_no_descriptor() -> None:
    async def main() -> None:
        before = open_fds()
        with pytest.raises(FileNotFoundError):
            await start_process(["/nonexistent/agent"], cwd=None, env=ENV, stdin_data=b"x")
        assert open_fds() == before

    on_loop("uvloop", main)
