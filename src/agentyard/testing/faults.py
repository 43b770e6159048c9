"""Fault injection for the tests: a TCP proxy in front of PostgreSQL that a test cuts and
restores, and a full disk on demand for a SQLAlchemy engine.

Both act below Agentyard's code: the proxy drops the real connections (the server sees what
a PostgreSQL restart looks like: resets, then refused connections), and the full disk makes
the driver raise exactly what SQLite raises on ENOSPC, so every layer above is the real one.
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import threading
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


class DiskFull:
    """While ``full``, every write through ``engine`` fails as on a full disk."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.full = False
        self.refused = 0
        sa.event.listen(engine.sync_engine, "do_execute", self._execute)
        sa.event.listen(engine.sync_engine, "do_executemany", self._execute)

    def _execute(self, cursor: Any, statement: str, parameters: Any, context: Any) -> None:
        if self.full and statement.lstrip().upper().startswith(_WRITES):
            self.refused += 1
            raise sqlite3.OperationalError("database or disk is full")


class TcpProxy:
    """127.0.0.1:<port> forwarding to ``upstream``; ``cut()`` drops every connection and
    refuses new ones until ``restore()``."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._cut = False
        self._closed = False
        self.drops = 0
        """How many times :meth:`drop` cut something."""
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)
        self._thread.start()

    def url(self, database_url: str) -> str:
        """``database_url`` (a SQLAlchemy URL on the upstream) through this proxy."""
        return (
            sa.make_url(database_url)
            .set(host="127.0.0.1", port=self.port)
            .render_as_string(hide_password=False)
        )

    @property
    def http_url(self) -> str:
        """An HTTP upstream through this proxy (e.g. a server a client's stream is cut from)."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            sockets, self._open = self._open, set()
        for sock in sockets:
            _close(sock)

    def drop(self, wait: float = 5.0) -> int:
        """Cut the connections open now but keep accepting new ones (a dropped stream that
        its client reconnects); waits up to ``wait`` s for one to be open, since a client may
        be between two connections. How many connections were cut."""
        deadline = time.monotonic() + wait
        while not self._open and time.monotonic() < deadline and not self._closed:
            time.sleep(0.01)
        with self._lock:
            sockets, self._open = self._open, set()
        for sock in sockets:
            _close(sock)
        if sockets:
            self.drops += 1
        return len(sockets) // 2

    def restore(self) -> None:
        with self._lock:
            self._cut = False

    def close(self) -> None:
        self._closed = True
        self.cut()
        _close(self._listener)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                refused = self._cut
            if refused:
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                if self._cut:
                    _close(client)
                    _close(upstream)
                    continue
                self._open.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(src)
                self._open.discard(dst)
            _close(src)
            _close(dst)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
