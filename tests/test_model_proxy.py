"""The host-side model proxy: per-run tokens for the real key, unbuffered streaming, and
egress only to allow-listed public hosts."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agentyard.metrics import Metrics
from agentyard.sandbox.proxy import EgressPolicy, ModelProxy, Upstream

REAL_KEY = "sk-real-upstream-key"


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[dict[str, str]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        _Upstream.seen.append(
            {**{k.lower(): v for k, v in self.headers.items()}, "path": self.path}
        )
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for part in (b"data: first\n\n", b"data: " + body + b"\n\n"):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.flush()
            time.sleep(0.8)
        self.wfile.write(b"0\r\n\r\n")


@pytest.fixture
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    _Upstream.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
async def proxy(tmp_path: Path) -> AsyncIterator[ModelProxy]:
    p = ModelProxy(
        tmp_path / "m.sock",
        egress=EgressPolicy(("localhost:*", "allowed.invalid"), private_hosts=("localhost",)),
    )
    await p.start()
    yield p
    await p.stop()


def client(proxy: ModelProxy) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(uds=str(proxy.socket_path))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:10080", timeout=10)


async def test_token_is_swapped_for_the_real_key_and_the_stream_is_not_buffered(
    proxy: ModelProxy, upstream: str
) -> None:
    """The provider gets the real key (never the token); the first chunk arrives while the
    provider is still writing the rest."""
    token = proxy.grant("run-1")
    proxy.route(token, "anthropic", Upstream(upstream + "/base", REAL_KEY, "x-api-key"))
    async with client(proxy) as c:
        started = time.monotonic()
        headers = {"x-api-key": token, "anthropic-version": "2023-06-01"}
        async with c.stream(
            "POST", "/anthropic/v1/messages?beta=true", headers=headers, content=b"hello"
        ) as r:
            assert r.status_code == 200
            chunks = r.aiter_raw()
            first = await chunks.__anext__()
            first_at = time.monotonic() - started
            rest = b"".join([part async for part in chunks])
        total = time.monotonic() - started
    assert first.startswith(b"data: first") and b"data: hello" in first + rest
    assert first_at < 0.6 < total
    seen = _Upstream.seen[-1]
    assert seen["path"] == "/base/v1/messages?beta=true"
    assert seen["x-api-key"] == REAL_KEY and "authorization" not in seen
    assert seen["anthropic-version"] == "2023-06-01"


async def test_unknown_revoked_and_unrouted_tokens_are_refused(
    proxy: ModelProxy, upstream: str
) -> None:
    """A token that was never granted, or whose run has ended, gets 401; a route the run
    was not given gets 404; nothing reaches the provider."""
    token = proxy.grant("run-2")
    proxy.route(token, "openai", Upstream(upstream, REAL_KEY, "bearer"))
    async with client(proxy) as c:
        bad = await c.post("/openai/responses", headers={"authorization": "Bearer nope"})
        assert bad.status_code == 401
        unrouted = await c.post("/anthropic/v1/messages", headers={"x-api-key": token})
        assert unrouted.status_code == 404
        ok = await c.post("/openai/responses", headers={"authorization": f"Bearer {token}"})
        assert ok.status_code == 200
        assert _Upstream.seen[-1]["authorization"] == f"Bearer {REAL_KEY}"
        proxy.revoke(token)
        after = await c.post("/openai/responses", headers={"authorization": f"Bearer {token}"})
        assert after.status_code == 401
    assert len(_Upstream.seen) == 1


async def _connect(proxy: ModelProxy, target: str) -> tuple[bytes, socket.socket]:
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(proxy.socket_path))
    sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    sock.settimeout(5)
    head = await asyncio.to_thread(sock.recv, 4096)
    while not head.startswith(b"HTTP/1.1 200") and (
        more := await asyncio.to_thread(sock.recv, 4096)
    ):
        head += more  # a refusal: its whole body, up to the close
    return head, sock


async def test_egress_tunnels_only_to_allowed_hosts(proxy: ModelProxy) -> None:
    """CONNECT reaches an allow-listed host (here a local echo server, explicitly allowed to
    be private); other hosts, and ports not listed, are refused."""
    echo = socket.socket()
    echo.bind(("127.0.0.1", 0))
    echo.listen()
    port = echo.getsockname()[1]

    def serve() -> None:
        conn, _ = echo.accept()
        conn.sendall(conn.recv(100).upper())
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    proxy.egress = EgressPolicy((f"localhost:{port}",), private_hosts=("localhost",))
    head, sock = await _connect(proxy, f"localhost:{port}")
    assert head.startswith(b"HTTP/1.1 200")
    sock.sendall(b"ping")
    assert await asyncio.to_thread(sock.recv, 100) == b"PING"
    sock.close()
    echo.close()
    for target in (f"localhost:{port + 1}", "example.com:443"):
        head, sock = await _connect(proxy, target)
        assert head.startswith(b"HTTP/1.1 403"), head
        sock.close()


async def test_egress_refuses_hosts_that_resolve_privately(proxy: ModelProxy) -> None:
    """An allowed host that resolves to loopback is refused unless it is allowed to be."""
    proxy.egress = EgressPolicy(("localhost",))
    head, sock = await _connect(proxy, "localhost:443")
    assert head.startswith(b"HTTP/1.1 403") and b"non-public" in head
    sock.close()
    proxy.egress = None
    head, sock = await _connect(proxy, "localhost:443")
    assert head.startswith(b"HTTP/1.1 403") and b"no network" in head
    sock.close()


def test_policy_matching() -> None:
    policy = EgressPolicy(("pypi.org", "*.npmjs.org", "files.example:8443"))
    assert policy.allows("pypi.org", 443) and policy.allows("PyPI.org.", 80)
    assert not policy.allows("pypi.org", 22) and not policy.allows("evilpypi.org", 443)
    assert policy.allows("registry.npmjs.org", 443) and not policy.allows("npmjs.org.evil", 443)
    assert policy.allows("files.example", 8443) and not policy.allows("files.example", 443)


async def test_requests_are_counted_by_provider_and_outcome(
    proxy: ModelProxy, upstream: str
) -> None:
    """Each request is told to the metrics once; a route the agent invents is counted as
    provider ``unknown``, so that it cannot make up label values."""
    metrics = Metrics()
    proxy.on_request = lambda provider, outcome: metrics.model_proxy_requests.labels(
        provider=provider, outcome=outcome
    ).inc()
    token = proxy.grant("run-3")
    proxy.route(token, "openai", Upstream(upstream, REAL_KEY, "bearer"))
    proxy.route(token, "dead", Upstream("http://127.0.0.1:9", REAL_KEY, "bearer"))
    auth = {"authorization": f"Bearer {token}"}
    async with client(proxy) as c:
        assert (await c.post("/openai/responses", headers=auth)).status_code == 200
        assert (await c.post("/made-up-route/x", headers=auth)).status_code == 404
        assert (await c.post("/openai/responses", headers={"x-api-key": "no"})).status_code == 401
        assert (await c.post("/dead/responses", headers=auth)).status_code == 502
    text = metrics.render(None).decode()
    found = {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "agentyard_model_proxy_requests_total"
    }
    assert found == {
        (("outcome", "ok"), ("provider", "openai")): 1,
        (("outcome", "rejected"), ("provider", "unknown")): 2,
        (("outcome", "unreachable"), ("provider", "dead")): 1,
    }
