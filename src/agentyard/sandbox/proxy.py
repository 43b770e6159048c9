"""The host side of a sandbox's only way out: the model proxy (and, if enabled, egress).

One proxy per server or worker process listens on a Unix socket that is bind-mounted into
every sandbox. A sandboxed agent sees ``http://127.0.0.1:<port>/<provider>`` as its model's
base URL and a per-run token as its key; the proxy checks the token, swaps in the real key
and forwards the request to the provider, streaming the response back unbuffered. A run's
token is revoked when the run ends, so nothing the agent kept can reach the model later.

With egress enabled, ``CONNECT host:port`` to an allow-listed host is tunnelled too (the
agent's ``HTTPS_PROXY``); a host that resolves to a loopback, private or otherwise
non-public address is refused unless it is explicitly allowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11
import httpx
import structlog

from agentyard.sandbox.base import ModelWatch
from agentyard.sandbox.metering import UsageTap

log = structlog.get_logger(__name__)

TOKEN_PREFIX = "ay-run-"

# Hop-by-hop headers, and the credentials the agent sent (replaced by the real ones).
_DROPPED_REQUEST = frozenset(
    {
        b"host",
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
        b"authorization",
        b"x-api-key",
        b"x-goog-api-key",
    }
)
# A watched run's responses come uncompressed, so that the meter can read their usage.
_DROPPED_WATCHED = _DROPPED_REQUEST | {b"accept-encoding"}
_DROPPED_RESPONSE = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"trailer", b"upgrade", b"te"}
)
_MAX_BODY = 64 * 1_048_576
_RESOLVE_SECONDS = 10.0
_CONNECT_SECONDS = 15.0


@dataclass(frozen=True)
class Upstream:
    """A provider: where its API is, its real key, and how the key is sent."""

    base_url: str
    api_key: str
    auth: str = "bearer"
    """``bearer`` (``Authorization: Bearer``), ``x-api-key`` (Anthropic) or ``x-goog-api-key``."""

    def headers(self) -> list[tuple[bytes, bytes]]:
        if not self.api_key:
            return []
        if self.auth == "bearer":
            return [(b"authorization", f"Bearer {self.api_key}".encode())]
        return [(self.auth.encode(), self.api_key.encode())]


@dataclass
class Grant:
    """What one run's token may reach."""

    run_id: str
    routes: dict[str, Upstream] = field(default_factory=dict)
    watch: ModelWatch | None = None
    """Told of each response's status and usage (the run's limits and retries)."""


@dataclass(frozen=True)
class EgressPolicy:
    """Which hosts a sandbox may open a tunnel to: ``host`` (ports 443 and 80),
    ``host:port``, or ``*.domain`` for its subdomains."""

    allowed_hosts: tuple[str, ...] = ()
    private_hosts: tuple[str, ...] = ()

    def allows(self, host: str, port: int) -> bool:
        host = host.lower().rstrip(".")
        for entry in map(str.lower, self.allowed_hosts):
            name, _, fixed = entry.rpartition(":") if ":" in entry else (entry, "", "")
            ports = (int(fixed),) if fixed.isdigit() else (443, 80)
            matched = host.endswith(name[1:]) if name.startswith("*.") else host == name
            if matched and port in ports:
                return True
        return False


class ModelProxy:
    def __init__(
        self,
        socket_path: Path,
        *,
        egress: EgressPolicy | None = None,
        timeout: httpx.Timeout | None = None,
        on_request: Callable[[str, str], None] | None = None,
    ) -> None:
        self.socket_path = socket_path
        self.egress = egress
        self.on_request = on_request
        """Told ``(provider, outcome)`` of every model request (the metrics): outcome
        ``ok``, ``provider_error`` (the provider answered 4xx/5xx), ``unreachable``,
        ``broken`` (the response stream broke) or ``rejected`` (a bad token, route or body;
        provider ``unknown`` unless the route is the run's, so that an agent cannot invent
        label values)."""
        self._grants: dict[str, Grant] = {}
        self._server: asyncio.AbstractServer | None = None
        self._client: httpx.AsyncClient | None = None
        self._timeout = timeout or httpx.Timeout(connect=30.0, read=900.0, write=60.0, pool=30.0)
        self._handlers: set[asyncio.Task[None]] = set()

    # -- tokens ------------------------------------------------------------------------

    def grant(self, run_id: str, watch: ModelWatch | None = None) -> str:
        """A new token for ``run_id``, valid until :meth:`revoke`."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(24)
        self._grants[token] = Grant(run_id, watch=watch)
        return token

    def route(self, token: str, name: str, upstream: Upstream) -> None:
        self._grants[token].routes[name] = upstream

    def revoke(self, token: str) -> None:
        self._grants.pop(token, None)

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self.socket_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        self._client = httpx.AsyncClient(timeout=self._timeout, follow_redirects=False)
        self._server = await asyncio.start_unix_server(self._accept, path=str(self.socket_path))
        os.chmod(self.socket_path, 0o600)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await _Connection(self, reader, writer).serve()
        except (ConnectionError, asyncio.IncompleteReadError, h11.ProtocolError):
            pass
        except Exception:
            log.exception("model proxy connection failed")
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    # -- what a request may reach --------------------------------------------------------

    def observe(self, provider: str, outcome: str) -> None:
        if self.on_request is not None:
            try:
                self.on_request(provider, outcome)
            except Exception:
                log.exception("counting a model request failed")

    def authorise(self, headers: list[tuple[bytes, bytes]]) -> Grant | None:
        for name, value in headers:
            if name in (b"authorization", b"x-api-key", b"x-goog-api-key"):
                token = value.decode(errors="replace").removeprefix("Bearer ").strip()
                grant = self._grants.get(token)
                if grant is not None:
                    return grant
        return None


class _Connection:
    """One client connection: HTTP/1.1 requests, kept alive, each forwarded in turn."""

    def __init__(
        self, proxy: ModelProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.proxy = proxy
        self.reader = reader
        self.writer = writer
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=256 * 1024)

    async def _next(self) -> h11.Event | type[h11.PAUSED] | type[h11.NEED_DATA]:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await self.reader.read(65536)
            self.conn.receive_data(data)
            if not data and self.conn.their_state is not h11.DONE:
                # Let h11 report the close (ConnectionClosed) or a truncated request.
                event = self.conn.next_event()
                return event if event is not h11.NEED_DATA else h11.ConnectionClosed()

    async def _send(self, event: h11.Event) -> None:
        data = self.conn.send(event)
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def serve(self) -> None:
        while True:
            event = await self._next()
            if not isinstance(event, h11.Request):
                return
            if event.method == b"CONNECT":
                await self._tunnel(event)
                return
            body = bytearray()
            while True:
                part = await self._next()
                if isinstance(part, h11.Data):
                    body += part.data
                    if len(body) > _MAX_BODY:
                        self.proxy.observe("unknown", "rejected")
                        await self._error(413, "request body too large")
                        return
                elif isinstance(part, h11.EndOfMessage):
                    break
                else:
                    return
            await self._forward(event, bytes(body))
            if self.conn.our_state is h11.MUST_CLOSE or self.conn.their_state is h11.MUST_CLOSE:
                return
            try:
                self.conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _error(self, status: int, message: str) -> None:
        body = json.dumps({"error": {"type": "agentyard_proxy", "message": message}}).encode()
        await self._send(
            h11.Response(
                status_code=status,
                headers=[
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            )
        )
        await self._send(h11.Data(data=body))
        await self._send(h11.EndOfMessage())

    async def _forward(self, request: h11.Request, body: bytes) -> None:
        grant = self.proxy.authorise(list(request.headers))
        if grant is None:
            self.proxy.observe("unknown", "rejected")
            await self._error(401, "unknown or expired run token")
            return
        target = request.target.decode(errors="replace")
        name, _, rest = target.lstrip("/").partition("/")
        route = name.split("?", 1)[0]
        upstream = grant.routes.get(route)
        if upstream is None:
            self.proxy.observe("unknown", "rejected")
            await self._error(404, f"no model route {name!r} for this run")
            return
        url = upstream.base_url.rstrip("/") + "/" + rest
        dropped = _DROPPED_REQUEST if grant.watch is None else _DROPPED_WATCHED
        headers = [(k, v) for k, v in request.headers if k.lower() not in dropped]
        headers += upstream.headers()
        if grant.watch is not None:
            headers.append((b"accept-encoding", b"identity"))
        client = self.proxy._client
        assert client is not None
        try:
            upstream_request = client.build_request(
                request.method.decode(), url, headers=headers, content=body
            )
            response = await client.send(upstream_request, stream=True)
        except httpx.HTTPError as exc:
            self.proxy.observe(route, "unreachable")
            await self._error(502, f"the model provider could not be reached: {type(exc).__name__}")
            return
        watch = grant.watch
        tap = UsageTap(route) if watch is not None else None
        if watch is not None:
            _told(watch.response, route, response.status_code)
        outcome = "broken"
        try:
            out_headers = [
                (k, v) for k, v in response.headers.raw if k.lower() not in _DROPPED_RESPONSE
            ]
            await self._send(
                h11.Response(
                    status_code=response.status_code,
                    headers=out_headers,
                    reason=response.reason_phrase.encode(),
                )
            )
            async for chunk in response.aiter_raw():
                await self._send(h11.Data(data=chunk))
                if tap is not None and not response.headers.get("content-encoding"):
                    tap.feed(chunk)
            await self._send(h11.EndOfMessage())
            outcome = "ok" if response.status_code < 400 else "provider_error"
        finally:
            self.proxy.observe(route, outcome)
            await response.aclose()
            if tap is not None and watch is not None:
                tap.close()
                used = tap.result()
                if used is not None:
                    _told(watch.usage, route, *used)

    async def _tunnel(self, request: h11.Request) -> None:
        policy = self.proxy.egress
        host, _, port_text = request.target.decode(errors="replace").rpartition(":")
        host = host.strip("[]")
        try:
            port = int(port_text)
        except ValueError:
            port = -1
        if policy is None:
            await self._error(403, "this sandbox has no network but the model")
            return
        if not policy.allows(host, port):
            await self._error(403, f"{host}:{port} is not on the sandbox's allow-list")
            return
        try:
            address = await _public_address(host, port, policy)
        except PermissionError as exc:
            await self._error(403, str(exc))
            return
        except OSError:
            await self._error(502, f"{host} does not resolve")
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(address, port), _CONNECT_SECONDS
            )
        except (OSError, TimeoutError):
            await self._error(502, f"{host}:{port} could not be reached")
            return
        await self._send(
            h11.Response(status_code=200, headers=[], reason=b"Connection established")
        )
        # h11 is done with this connection: what follows is the tunnel's raw bytes.
        leftover, _ = self.conn.trailing_data
        if leftover:
            up_writer.write(leftover)
        await asyncio.gather(
            _splice(self.reader, up_writer), _splice(up_reader, self.writer), return_exceptions=True
        )
        up_writer.close()


def _told(call: Any, *args: Any) -> None:
    """A watcher's failure never breaks the agent's request."""
    try:
        call(*args)
    except Exception:
        log.exception("model response watcher failed")


async def _splice(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()


async def _public_address(host: str, port: int, policy: EgressPolicy) -> str:
    """The address to connect to: resolved once here (so a second answer cannot differ),
    and refused if any answer is not a public address, unless the host is allowed to be."""
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(
        loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), _RESOLVE_SECONDS
    )
    if not infos:
        raise OSError("no address")
    private_ok = host.lower() in {h.lower() for h in policy.private_hosts}
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global and not private_ok:
            raise PermissionError(f"{host} resolves to a non-public address ({address})")
    return str(infos[0][4][0])
