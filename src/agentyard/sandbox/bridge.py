"""The first process inside a sandbox: the model bridge, the run's limits, then the agent.

Run as ``python -I -S bridge.py --port P --socket S [--rlimit NAME=N ...] -- argv...`` by
bubblewrap. It listens on ``127.0.0.1:P`` in the sandbox's own network namespace (where
nothing else is reachable) and relays every connection to the host-side proxy's Unix socket
``S``, which is the sandbox's only way out. The agent is started as its child with the
limits applied; the bridge exits with the agent's status, and bubblewrap then tears the
sandbox's PID namespace down, taking every process the agent left behind with it.

Standard library only, and only its C modules (``_socket``, ``_thread``, ``_signal``): it
starts on every run, and ``socket``, ``threading`` and ``signal`` would double its start-up.
"""

import _signal  # type: ignore[import-not-found]
import _socket
import _thread
import os
import resource
import sys

_CHUNK = 65536
_LIMITS = {
    "nproc": resource.RLIMIT_NPROC,
    "nofile": resource.RLIMIT_NOFILE,
    "fsize": resource.RLIMIT_FSIZE,
    "core": resource.RLIMIT_CORE,
}


def _pump(src: _socket.socket, dst: _socket.socket) -> None:
    try:
        while True:
            data = src.recv(_CHUNK)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:  # noqa: SIM105 - contextlib is not imported: it costs start-up time
            dst.shutdown(_socket.SHUT_WR)
        except OSError:
            pass


def _relay(conn: _socket.socket, path: str) -> None:
    upstream = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        upstream.connect(path)
    except OSError:
        conn.close()
        upstream.close()
        return
    done = _thread.allocate_lock()
    done.acquire()

    def back() -> None:
        _pump(upstream, conn)
        done.release()

    _thread.start_new_thread(back, ())
    _pump(conn, upstream)
    done.acquire()
    conn.close()
    upstream.close()


def _serve(listener: _socket.socket, path: str) -> None:
    while True:
        try:
            fd, _ = listener._accept()  # type: ignore[attr-defined]
        except OSError:
            return
        conn = _socket.socket(fileno=fd)
        conn.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        _thread.start_new_thread(_relay, (conn, path))


def _parse(argv: list[str]) -> tuple[int, str, dict[str, int], list[str]]:
    port, path, limits = 0, "", {}
    i = 0
    while i < len(argv) and argv[i] != "--":
        flag, value = argv[i], argv[i + 1]
        if flag == "--port":
            port = int(value)
        elif flag == "--socket":
            path = value
        elif flag == "--rlimit":
            name, _, number = value.partition("=")
            limits[name] = int(number)
        else:
            raise SystemExit(f"agentyard bridge: unknown option {flag}")
        i += 2
    command = argv[i + 1 :]
    if not command:
        raise SystemExit("agentyard bridge: no command")
    return port, path, limits, command


def main() -> None:
    port, path, limits, command = _parse(sys.argv[1:])
    listener = None
    if port and path:
        # Listening before the agent starts: its first request can never be refused.
        listener = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
        listener.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(128)
    pid = os.fork()
    if pid == 0:
        try:
            if listener is not None:
                listener.close()
            for name, value in limits.items():
                resource.setrlimit(_LIMITS[name], (value, value))
            os.execvp(command[0], command)
        except OSError as exc:
            os.write(2, f"agentyard sandbox: cannot start {command[0]!r}: {exc}\n".encode())
        os._exit(127)
    for sig in (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP):
        _signal.signal(sig, lambda number, _frame: os.kill(pid, number))
    if listener is not None:
        _thread.start_new_thread(_serve, (listener, path))
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    os._exit(128 - code if code < 0 else code)


if __name__ == "__main__":
    main()
