"""The Claude CLI started from a thread (vfork), under the Claude SDK's own transport.

The SDK starts its CLI with ``anyio.open_process``, which on uvloop forks the whole server:
its page tables are copied while the event loop stands still, about 13 ms a run in the server
against 1-3 ms in a small process (measured with the scripted model). Here the SDK's
transport module sees an ``anyio`` whose ``open_process`` starts the process as the command
runtime does (:func:`agentyard.core.spawning.start_process`) and hands back an anyio
``Process`` over its pipes; everything else of anyio, and everything of the SDK (its
command line, environment, stream parsing, shutdown), is unchanged. A call this does not
cover (another user, inherited descriptors) goes to anyio itself.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path
from subprocess import PIPE
from types import ModuleType
from typing import Any

import anyio
import anyio.abc

from agentyard.core.spawning import Process, start_process


class _Stdin(anyio.abc.ByteSendStream):
    """The write end of the CLI's stdin, written without blocking the loop."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self._fd: int | None = fd

    async def send(self, item: bytes) -> None:
        view = memoryview(item)
        while view:
            if self._fd is None:
                raise anyio.ClosedResourceError
            try:
                view = view[os.write(self._fd, view) :]
            except BlockingIOError:
                await self._writable(self._fd)
            except (BrokenPipeError, ConnectionResetError) as exc:
                raise anyio.BrokenResourceError from exc

    @staticmethod
    async def _writable(fd: int) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def writable() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_writer(fd, writable)
        try:
            await ready
        finally:
            loop.remove_writer(fd)

    async def aclose(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class _Output(anyio.abc.ByteReceiveStream):
    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    async def receive(self, max_bytes: int = 65536) -> bytes:
        data = await self._reader.read(max_bytes)
        if not data:
            raise anyio.EndOfStream
        return data

    async def aclose(self) -> None:
        self._reader.set_exception(anyio.ClosedResourceError())


class CliProcess(anyio.abc.Process):
    """A :class:`agentyard.core.spawning.Process` as an anyio ``Process``."""

    def __init__(self, process: Process) -> None:
        assert process.stdin_fd is not None
        assert process.stdout is not None and process.stderr is not None
        self._process = process
        self._stdin = _Stdin(process.stdin_fd)
        self._stdout = _Output(process.stdout)
        self._stderr = _Output(process.stderr)

    async def aclose(self) -> None:
        await self._stdin.aclose()
        self._process.close_pipes()
        await self.wait()

    async def wait(self) -> int:
        return await self._process.wait()

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def send_signal(self, sig: int) -> None:
        self._process.send_signal(sig)

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    @property
    def stdin(self) -> anyio.abc.ByteSendStream:
        return self._stdin

    @property
    def stdout(self) -> anyio.abc.ByteReceiveStream:
        return self._stdout

    @property
    def stderr(self) -> anyio.abc.ByteReceiveStream:
        return self._stderr


async def open_process(
    command: Sequence[str | os.PathLike[str]],
    *,
    stdin: Any,
    stdout: Any,
    stderr: Any,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> anyio.abc.Process:
    """``anyio.open_process`` for three pipes, started from a thread; anyio's otherwise."""
    if (
        isinstance(command, (str, bytes))
        or (stdin, stdout, stderr) != (PIPE, PIPE, PIPE)
        or any(value is not None for value in kwargs.values())
    ):
        return await anyio.open_process(
            command, stdin=stdin, stdout=stdout, stderr=stderr, cwd=cwd, env=env, **kwargs
        )
    process = await start_process(
        [os.fspath(part) for part in command],
        cwd=Path(cwd) if cwd is not None else None,
        env=os.environ if env is None else env,
        stdin_pipe=True,
    )
    return CliProcess(process)


class _Anyio:
    """anyio as the SDK's transport module sees it: :func:`open_process` is this module's."""

    def __init__(self, real: ModuleType) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    open_process = staticmethod(open_process)


def install(transport_module: ModuleType) -> None:
    """Give ``transport_module`` (the SDK's subprocess transport) this module's anyio."""
    current = getattr(transport_module, "anyio", None)
    if isinstance(current, ModuleType):
        setattr(transport_module, "anyio", _Anyio(current))  # noqa: B010
