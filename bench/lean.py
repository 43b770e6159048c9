"""A lean HTTP/1.1 client for loading the server from the same 2-core machine.

httpx's async client spends 6-7 ms of CPU on each POST here, twice what the server spends
answering it: POSTing 1,000 tasks with it, the benchmark's process took a core from the
server and its sandboxes, and the drain rate measured the client. This one keeps its
connections alive and does little per request (a request's bytes, a status line, headers and
a body of the length the server gives), tens of microseconds of CPU a request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any


class Response:
    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


class Connection:
    """One keep-alive connection: one request at a time."""

    def __init__(self, host: str, port: int, key: str) -> None:
        self.host, self.port = host, port
        self.headers = f"Host: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self._reader, self._writer

    async def request(self, method: str, path: str, body: Any = None) -> Response:
        reader, writer = await self._open()
        data = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\n{self.headers}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        writer.write(head.encode() + b"\r\n" + data)
        lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length, close = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                raise RuntimeError("a chunked response: not for this client")
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        payload = await reader.readexactly(length)
        if close:
            self.close()
        return Response(status, payload)

    async def open_stream(self, path: str) -> None:
        """GET a stream: returns once its 200 answer has begun (RuntimeError otherwise);
        :meth:`chunks` then reads its body."""
        reader, writer = await self._open()
        accept = "Accept: text/event-stream\r\n"
        writer.write(f"GET {path} HTTP/1.1\r\n{self.headers}{accept}\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            self.close()
            raise RuntimeError(f"stream refused: {head[:200]!r}")

    async def chunks(self) -> AsyncIterator[bytes]:
        """The open stream's body, a chunk at a time as it arrives, until its last."""
        reader, _ = await self._open()
        while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
            yield (await reader.readexactly(size + 2))[:-2]

    async def stream_until(self, path: str, needle: bytes) -> bytes:
        """GET a stream and read it until ``needle`` has arrived; the connection is closed
        then (the stream would go on)."""
        await self.open_stream(path)
        seen = b""
        try:
            async for chunk in self.chunks():
                seen += chunk
                if needle in seen:
                    return seen
            raise RuntimeError(f"the stream ended before {needle!r}")
        finally:
            self.close()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


class Pool:
    """``size`` connections; each request takes a free one."""

    def __init__(self, url: str, key: str, size: int) -> None:
        host, _, port = url.removeprefix("http://").partition(":")
        self._all = [Connection(host, int(port.rstrip("/")), key) for _ in range(size)]
        self._free: asyncio.Queue[Connection] = asyncio.Queue()
        for connection in self._all:
            self._free.put_nowait(connection)

    async def request(self, method: str, path: str, body: Any = None) -> Response:
        connection = await self._free.get()
        try:
            return await connection.request(method, path, body)
        except BaseException:
            connection.close()
            raise
        finally:
            self._free.put_nowait(connection)

    def close(self) -> None:
        for connection in self._all:
            connection.close()
