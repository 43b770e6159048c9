"""A TCP proxy that can cut every connection through it at once: how the tests make a
server "drop" a client's stream mid-run, without touching the server."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from types import TracebackType


class DroppingProxy:
    """Forwards 127.0.0.1:<port> to ``target_port``; ``drop()`` cuts what is open now."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.drops = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> DroppingProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Refuse new connections and cut the open ones: the server is gone."""
        self._closed = True
        # shutdown() wakes the thread blocked in accept(); close() alone would leave the
        # socket listening until that accept returned.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self.drop()

    def drop(self, wait: float = 5.0) -> int:
        """Cut every open connection (waiting up to ``wait`` s for one to be open, since a
        client may be between two connections); how many there were."""
        deadline = time.monotonic() + wait
        while not self._open and time.monotonic() < deadline and not self._closed:
            time.sleep(0.01)
        with self._lock:
            sockets, self._open = list(self._open), set()
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        if sockets:
            self.drops += 1
        return len(sockets) // 2

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._open |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            # One side ended: end the other too, and forget both.
            with self._lock:
                self._open -= {source, sink}
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
