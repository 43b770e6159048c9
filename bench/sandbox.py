"""What the sandbox costs: agent start, and each model request through the proxy.

Prints:
- p50/p99 of starting and finishing a trivial agent (``/bin/true``) directly, and through a
  bubblewrap confinement (the per-run script, bwrap, the in-sandbox bridge), and the
  difference: the sandbox's start-up cost;
- p50/p99 of a model request (a small streamed answer from a local provider) made directly
  and through the model proxy (from inside a sandbox, over its loopback bridge), and the
  difference: the proxy's cost per request.

Usage: python bench/sandbox.py [--runs 50]
"""

# ruff: noqa: ASYNC221  (a benchmark: the timed agents are started blocking, one at a time)
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from agentyard.sandbox.base import SandboxRequest
from agentyard.sandbox.bwrap import BwrapSandbox
from figures import percentile


def show(name: str, values: list[float]) -> tuple[float, float]:
    p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
    print(f"{name:<44} p50 {p50 * 1000:7.2f} ms   p99 {p99 * 1000:7.2f} ms")
    return p50, p99


class _Provider(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b"event: message_stop\ndata: {}\n\n"
        # One write: headers and body apart would meet the peer's delayed ACK (40 ms).
        head = f"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {len(body)}"
        self.wfile.write(head.encode() + b"\r\n\r\n" + body)


# Runs inside the sandbox (or on the host, for the direct figure): N sequential requests on
# one keep-alive connection, as a CLI makes them; prints each one's seconds as JSON.
_CLIENT = """
import http.client, json, sys, time, urllib.parse
url = urllib.parse.urlsplit(sys.argv[1]); key = sys.argv[2]; n = int(sys.argv[3])
conn = http.client.HTTPConnection(url.hostname, url.port)
times = []
for _ in range(n):
    t = time.perf_counter()
    conn.request("POST", url.path + "/v1/messages", body=b'{"stream": true}',
                 headers={"x-api-key": key, "content-type": "application/json"})
    conn.getresponse().read()
    times.append(time.perf_counter() - t)
print(json.dumps(times[1:]))
"""


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()

    provider = ThreadingHTTPServer(("127.0.0.1", 0), _Provider)
    threading.Thread(target=provider.serve_forever, daemon=True).start()
    upstream = f"http://127.0.0.1:{provider.server_address[1]}"

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "ws").mkdir()
        (root / "state").mkdir()
        sandbox = BwrapSandbox(data_dir=root / "data")
        await sandbox.start()
        try:
            request = SandboxRequest("bench-run", root / "ws", root / "state")
            async with sandbox.confine(request) as confined:
                env = confined.environment({})
                wrapper = confined.command("/bin/true", env)
                direct, boxed = [], []
                for _ in range(args.runs):
                    t = time.perf_counter()
                    subprocess.run(["/bin/true"], env=env, check=True)
                    direct.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    subprocess.run([wrapper], env=env, check=True)
                    boxed.append(time.perf_counter() - t)
                print(f"agent start ({args.runs} runs)")
                d50, d99 = show("  /bin/true directly", direct)
                b50, b99 = show("  /bin/true in the sandbox", boxed)
                print(
                    f"  sandbox start adds: p50 {(b50 - d50) * 1000:.2f} ms, "
                    f"p99 {(b99 - d99) * 1000:.2f} ms"
                )

                model = confined.endpoint("anthropic", upstream, "sk-real", "x-api-key")
                n = str(args.runs * 4 + 1)
                python = sandbox.python
                plain = subprocess.run(
                    [python, "-c", _CLIENT, upstream, "sk-real", n],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                script = root / "ws" / "client.py"
                script.write_text(_CLIENT)
                env = confined.environment({})
                wrapper = confined.command(python, env)
                # Not subprocess.run: the proxy answers on this process's event loop.
                child = await asyncio.create_subprocess_exec(
                    wrapper, str(script), model.base_url, model.api_key, n,
                    env=env, stdout=asyncio.subprocess.PIPE,
                )  # fmt: skip
                stdout, _ = await child.communicate()
                proxied_times = json.loads(stdout)
                print(f"model request ({int(n) - 1} requests, one keep-alive connection)")
                r50, _ = show("  directly to the provider", json.loads(plain.stdout))
                p50, _ = show("  through the bridge and the proxy", proxied_times)
                print(f"  the proxy adds: p50 {(p50 - r50) * 1000:.2f} ms per request")
                print(
                    f"  (means: {statistics.mean(proxied_times) * 1000:.2f} ms "
                    f"vs {statistics.mean(json.loads(plain.stdout)) * 1000:.2f} ms)"
                )
        finally:
            await sandbox.stop()
            provider.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
