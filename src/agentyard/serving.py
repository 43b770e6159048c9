"""``agentyard serve``'s HTTP server: uvicorn, with the server's shutdown.

uvicorn, on SIGTERM, stops accepting connections, waits (up to its own short timeout) for
the requests under way, then runs the application's lifespan shutdown. The application's
signal handler (``Agentyard._end_streams_on_exit``) has by then ended every SSE stream, so
that wait is short, and the lifespan shutdown drains the runs for their grace period.

Two things differ from plain uvicorn: a second SIGTERM stops at once, like a second SIGINT
(uvicorn's own handler forces only on SIGINT); and a forced stop still ends the runs
executing here (uvicorn then skips the lifespan shutdown, and runs would stay ``running``
until the next start found them).
"""

from __future__ import annotations

import socket
from types import FrameType

import structlog
import uvicorn

from agentyard.server import Agentyard

log = structlog.get_logger(__name__)


class Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, yard: Agentyard) -> None:
        super().__init__(config)
        self.yard = yard

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit:
            self.force_exit = True
        super().handle_exit(sig, frame)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            bound = [s.getsockname() for server in self.servers for s in server.sockets]
            urls = [f"http://{_host(addr[0])}:{addr[1]}" for addr in bound]
            log.info("listening", urls=urls)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        if self.force_exit:
            await self.yard.stop()  # uvicorn skipped the lifespan shutdown


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def serve(application: object, yard: Agentyard, host: str, port: int) -> None:
    config = uvicorn.Config(
        application,  # type: ignore[arg-type]
        host=host,
        port=port,
        log_level="warning",
        access_log=False,  # the application logs each request (agentyard.api.access)
        timeout_graceful_shutdown=5,
    )
    Server(config, yard).run()
