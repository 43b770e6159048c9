"""Starting processes from threads, and one lock between that and writing scripts to execute.

The server starts its processes (git: :mod:`agentyard.workspace.git_process`; agents:
:func:`start_process`) from threads, where ``subprocess`` uses vfork. A process started from
a thread holds a copy of every descriptor of the server from its fork until its exec. If one
of them is a script still open for writing, executing that script meanwhile fails with "Text
file busy". So a thread starts its process, and the server writes such a script, under this
lock (each holds it for about a millisecond).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

EXEC_WRITE_LOCK = threading.Lock()


# -- agent processes started from a thread ---------------------------------------------------

_SPAWN_THREADS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="agentyard-spawn")
_LINE_LIMIT = 2**16
_READ_CHUNK = 2**16


class Process:
    """A child process started from a thread (:func:`start_process`), its stdout and stderr
    read on the event loop: the part of :class:`asyncio.subprocess.Process` the runtimes use.

    The pipes are this module's own descriptors, read with ``add_reader`` (uvloop's pipe
    transports close a descriptor twice, which can close one another thread just opened),
    and the exit is noticed through a pidfd (a thread waits where there is none): no child
    watcher or signal handler is involved."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid = popen.pid
        self.stdout: asyncio.StreamReader | None = None
        self.stderr: asyncio.StreamReader | None = None
        self.stdin_fd: int | None = None
        """The write end of its stdin pipe (``stdin_pipe``), the caller's to write and close."""
        self._pipes: list[_PipeTransport] = []
        self._exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    def send_signal(self, sig: int) -> None:
        """Signal the process unless it has been reaped (its pid may be another's then)."""
        self._popen.send_signal(sig)

    def close_pipes(self) -> None:
        """Stop reading its stdout and stderr (their descriptors are closed)."""
        for pipe in self._pipes:
            pipe.close()

    def _watch_exit(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # no pidfd here: a thread waits for the exit
            waiting = loop.run_in_executor(None, self._popen.wait)
            waiting.add_done_callback(lambda _: self._reaped())
            return

        def readable() -> None:
            if self._popen.poll() is not None:
                loop.remove_reader(pidfd)
                os.close(pidfd)
                self._reaped()

        loop.add_reader(pidfd, readable)

    def _reaped(self) -> None:
        if not self._exited.done() and self._popen.returncode is not None:
            self._exited.set_result(self._popen.returncode)


async def start_process(
    argv: Sequence[str],
    *,
    cwd: Path | None,
    env: Mapping[str, str],
    stdin_data: bytes | None = None,
    stdin_pipe: bool = False,
    limit: int = _LINE_LIMIT,
) -> Process:
    """Start ``argv`` in a new session, its stdout and stderr read on the event loop, and
    ``stdin_data`` (if any) written to its stdin by a thread, or with ``stdin_pipe`` its
    stdin a pipe whose write end is ``Process.stdin_fd`` (else stdin is /dev/null).

    Started from a thread: ``subprocess`` uses vfork there, which costs the same whatever
    the server's size, where the loop's own spawn (uvloop: fork) copies the server's page
    tables and stalls the loop meanwhile (about 15 ms an agent). OSError as
    ``subprocess.Popen`` raises it."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    assert stdin_data is None or not stdin_pipe
    in_r, in_w = os.pipe() if stdin_data is not None or stdin_pipe else (None, None)
    ours = [out_r, err_r, *([in_w] if in_w is not None else [])]

    def spawn() -> subprocess.Popen[bytes]:
        try:
            with EXEC_WRITE_LOCK:
                return subprocess.Popen(
                    list(argv),
                    cwd=cwd,
                    env=dict(env),
                    stdin=in_r if in_r is not None else subprocess.DEVNULL,
                    stdout=out_w,
                    stderr=err_w,
                    start_new_session=True,
                )
        finally:
            for fd in (out_w, err_w, in_r):
                if fd is not None:
                    os.close(fd)

    loop = asyncio.get_running_loop()
    starting = loop.run_in_executor(_SPAWN_THREADS, spawn)
    try:
        popen = await asyncio.shield(starting)
    except BaseException:
        for fd in ours:
            os.close(fd)
        with contextlib.suppress(Exception):  # started meanwhile: nobody else would end it
            _end(await starting)
        raise
    proc = Process(popen)
    proc.stdout, stdout_pipe = _reader(loop, out_r, limit)
    proc.stderr, stderr_pipe = _reader(loop, err_r, limit)
    proc._pipes = [stdout_pipe, stderr_pipe]
    if stdin_data is not None:
        assert in_w is not None
        threading.Thread(target=_feed, args=(in_w, stdin_data), daemon=True).start()
    else:
        proc.stdin_fd = in_w
    proc._watch_exit()
    return proc


def _feed(fd: int, data: bytes) -> None:
    """Write ``data`` to a child's stdin and close it (it may exit without reading)."""
    try:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_group(pid: int) -> None:
    """SIGKILL the process group led by ``pid`` (a process started in a new session), if it
    is still there."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _end(popen: subprocess.Popen[bytes]) -> None:
    """Kill a process this module started and nobody will use, with its group; reap it."""
    kill_group(popen.pid)
    popen.wait()


def _reader(
    loop: asyncio.AbstractEventLoop, fd: int, limit: int
) -> tuple[asyncio.StreamReader, _PipeTransport]:
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    pipe = _PipeTransport(loop, fd, asyncio.StreamReaderProtocol(reader, loop=loop))
    return reader, pipe


class _PipeTransport(asyncio.ReadTransport):
    """The read end of a pipe this module owns, fed to a protocol with ``add_reader``;
    closed (once) at end of file, on an error or on :meth:`close`. Reading pauses while the
    reader's buffer is full (the protocol asks)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, fd: int, protocol: asyncio.Protocol
    ) -> None:
        super().__init__()
        self._loop, self._fd, self._protocol = loop, fd, protocol
        self._paused = False
        self._closed = False
        os.set_blocking(fd, False)
        protocol.connection_made(self)
        loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, _READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._close(exc)
            return
        if data:
            self._protocol.data_received(data)
        else:
            self._protocol.eof_received()
            self._close(None)

    def pause_reading(self) -> None:
        if not self._paused and not self._closed:
            self._paused = True
            self._loop.remove_reader(self._fd)

    def resume_reading(self) -> None:
        if self._paused and not self._closed:
            self._paused = False
            self._loop.add_reader(self._fd, self._readable)

    def is_reading(self) -> bool:
        return not self._paused and not self._closed

    def is_closing(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._close(None)

    def _close(self, exc: Exception | None) -> None:
        if self._closed:
            return
        self._closed = True
        if not self._paused:
            self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self._loop.call_soon(self._protocol.connection_lost, exc)
