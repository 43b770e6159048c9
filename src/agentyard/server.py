"""The composition root: builds the store, event log, runtimes, queue and service."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any

import structlog

from agentyard.accounts import ApiKeys
from agentyard.connections import GitConnections, RepositoryRules
from agentyard.core import apikeys
from agentyard.crypto import SecretBox
from agentyard.datadir import ensure_private_dir, make_database_private
from agentyard.events.bus import LocalBus
from agentyard.events.log import EventLog
from agentyard.groups import Groups
from agentyard.metrics import Metrics
from agentyard.queue.base import TaskQueue
from agentyard.queue.local import LocalQueue
from agentyard.reconcile import interrupt_orphans
from agentyard.runner import Runner
from agentyard.runtimes.base import INSTALLATION_ENV, AgentRuntime
from agentyard.runtimes.processes import installation_id
from agentyard.runtimes.registry import build_runtimes
from agentyard.sandbox.bwrap import BwrapSandbox
from agentyard.sandbox.factory import build_sandbox, start_sandbox
from agentyard.service import Service
from agentyard.settings import Settings
from agentyard.store.db import SCHEMA_HEAD, create_engine, is_sqlite, migrate
from agentyard.store.faults import RetryPolicy, public_message
from agentyard.store.keycache import VerifiedKeys
from agentyard.store.stats import run_counts, schema_revision
from agentyard.store.store import Store
from agentyard.store.webhooks import WebhookStore
from agentyard.task_limits import TaskLimits
from agentyard.webhooks.delivery import Deliverer
from agentyard.webhooks.delivery import RetryPolicy as WebhookRetry
from agentyard.webhooks.dispatcher import Dispatcher
from agentyard.webhooks.service import Webhooks
from agentyard.webhooks.urls import WebhookUrls
from agentyard.workspace.git import Git
from agentyard.workspace.github import GitHub
from agentyard.workspace.workspaces import Workspaces

log = structlog.get_logger(__name__)

ADMIN_USER = "admin"
_READY_TIMEOUT = 2.0
"""Seconds a probe or a scrape waits for the database."""


class Agentyard:
    def __init__(
        self,
        settings: Settings,
        *,
        run_workers: bool = True,
        runtimes: dict[str, AgentRuntime] | None = None,
    ) -> None:
        self.settings = settings
        self.run_workers = run_workers
        ensure_private_dir(settings.resolved_data_dir)
        self.installation = installation_id(settings.resolved_data_dir)
        """Carried by this installation's agent processes: its reaper kills only those."""
        self.store = Store(
            create_engine(settings.db_url),
            VerifiedKeys(settings.key_cache_seconds, settings.resolved_data_dir),
        )
        self.metrics = Metrics()
        self.bus = LocalBus()
        self.metrics.sse_subscribers.set_function(lambda: self.bus.subscribers)
        self.events = EventLog(self.store, self.bus, self.metrics)
        self.runtimes = runtimes if runtimes is not None else build_runtimes(settings)
        secret = settings.secret_key.get_secret_value() if settings.secret_key else None
        self.git = GitConnections(
            self.store,
            SecretBox.from_settings(secret, settings.resolved_data_dir),
            GitHub(settings.github_api_url),
        )
        git_state = settings.resolved_data_dir / "git"
        self.workspaces = Workspaces(
            settings.workspaces_dir,
            Git(
                git_state,
                timeout=settings.git_timeout_seconds,
                author_name=settings.git_author_name,
                author_email=settings.git_author_email,
                allow_http=any(h.startswith("http://") for h in settings.repo_hosts),
            ),
            git_state / "mirrors",
            settings.repo_hosts,
        )
        self.sandbox = build_sandbox(settings)
        if isinstance(self.sandbox, BwrapSandbox):
            self.sandbox.proxy.on_request = self._count_model_request
        self.runner = Runner(
            self.store,
            self.events,
            self.runtimes,
            self.workspaces,
            settings.runtime_state_dir,
            settings.run_timeout_seconds,
            tokens=self.git.token,
            pull_requests=self.git.open_pull_request,
            secrets=self.git.box,
            sandbox=self.sandbox,
            markers={INSTALLATION_ENV: self.installation},
            policy=RetryPolicy(outage_seconds=settings.db_outage_seconds),
            event_buffer_bytes=settings.event_buffer_bytes,
            prices=settings.codex_prices,
            metrics=self.metrics,
        )
        self.scale_out = not is_sqlite(settings.db_url)
        self.queue: TaskQueue
        if self.scale_out:
            from agentyard.queue.procrastinate_queue import ProcrastinateQueue

            self.queue = ProcrastinateQueue(
                settings.db_url,
                self.store,
                self.events,
                self.runner,
                installation=self.installation,
                cancel_wait_seconds=settings.cancel_wait_seconds,
                heartbeat_seconds=settings.worker_heartbeat_seconds,
                stalled_after_seconds=settings.worker_stalled_seconds,
                reap_every_seconds=settings.sweep_seconds,
                user_max_running=settings.user_max_running_runs,
            )
        else:
            self.queue = LocalQueue(
                self.store,
                self.events,
                self.runner,
                settings.max_concurrent_runs,
                poll_seconds=settings.queue_poll_seconds,
                cancel_wait_seconds=settings.cancel_wait_seconds,
                sweep_seconds=settings.sweep_seconds,
                user_max_running=settings.user_max_running_runs,
            )
        webhook_urls = WebhookUrls(settings.webhook_private_hosts)
        webhook_store = WebhookStore(self.store.engine)
        self.deliverer = Deliverer(
            webhook_store,
            self.git.box,
            webhook_urls,
            timeout_seconds=settings.webhook_timeout_seconds,
            policy=WebhookRetry(
                settings.webhook_retry_base_seconds, settings.webhook_retry_for_seconds
            ),
            on_outcome=lambda outcome: self.metrics.webhook_deliveries.labels(outcome).inc(),
        )
        if self.scale_out:
            from agentyard.queue.procrastinate_queue import ProcrastinateQueue

            assert isinstance(self.queue, ProcrastinateQueue)
            self.queue.deliver_webhooks(self.deliverer)
        self.dispatcher = Dispatcher(self.deliverer, poll_seconds=settings.queue_poll_seconds)
        """Embedded only: the scale-out queue delivers through jobs."""
        self._dispatching = False
        self.webhooks = Webhooks(
            webhook_store, self.git.box, webhook_urls, redelivered=self._redelivered
        )
        self._background: list[asyncio.Task[None]] = []
        self._sandbox_started = False
        self._signal_handlers: list[tuple[int, Any, Any]] = []
        self._shutdown_begun = False
        self._stopping: asyncio.Future[None] | None = None
        self.service = Service(
            self.store,
            self.events,
            self.queue,
            self.runtimes,
            self.workspaces,
            RepositoryRules(self.git, settings.repo_hosts, settings.repo_private_hosts),
            secrets=self.git.box,
            limits=TaskLimits(
                max_duration=settings.task_max_duration_seconds,
                max_duration_cap=settings.task_max_duration_cap_seconds,
                max_cost_usd=settings.task_max_cost_usd,
                max_cost_cap_usd=settings.task_max_cost_cap_usd,
                user_max_running=settings.user_max_running_runs,
                user_max_queued=settings.user_max_queued_runs,
            ),
            webhook_urls=webhook_urls,
        )
        self.groups = Groups(self.service, self.git)
        env_key = settings.api_key.get_secret_value() if settings.api_key else None
        self.keys = ApiKeys(self.store, env_key, ADMIN_USER)

    async def _redelivered(self, delivery: dict[str, Any]) -> None:
        """A delivery made due again: wake whoever delivers it."""
        if self.scale_out:
            from agentyard.queue.procrastinate_queue import ProcrastinateQueue

            assert isinstance(self.queue, ProcrastinateQueue) and self.queue.webhooks
            await self.queue.webhooks.defer([delivery])
        else:
            self.dispatcher.wake()

    async def start(self) -> None:
        _widen_default_executor(self.settings.max_concurrent_runs)
        self._end_streams_on_exit()
        data_dir = self.settings.resolved_data_dir
        ensure_private_dir(data_dir)
        await asyncio.to_thread(migrate, self.settings.db_url)
        make_database_private(self.settings.db_url)
        await self.ensure_admin_key()
        if self.run_workers:
            await self._start_sandbox()
        if self.scale_out:
            await self._start_scale_out()
        elif self.run_workers:
            # Only the process that executes runs may declare the previous one's runs dead.
            n = await interrupt_orphans(
                self.store, self.events, "Server restarted while the run was executing"
            )
            if n:
                log.warning("interrupted runs left by a previous server", count=n)
            await self.queue.start()
            await self.dispatcher.start()
            self._dispatching = True
        self._log_started()
        # Everything loaded so far (the application, SQLAlchemy, the SDKs) lives as long as
        # the process: out of the collector's sight, a full collection takes a few ms rather
        # than the tens of ms that stall every request while a chatty run allocates.
        gc.freeze()

    def _log_started(self) -> None:
        """What this process offers, in one line (no URL: a database URL holds a password)."""
        log.info(
            "agentyard started",
            runtimes={name: rt.availability().configured for name, rt in self.runtimes.items()},
            sandbox=self.sandbox.kind,
            database="sqlite" if not self.scale_out else "postgresql",
            queue="procrastinate" if self.scale_out else "local",
            executes_runs=self.run_workers,
            max_concurrent_runs=self.settings.max_concurrent_runs,
            shutdown_grace_seconds=self.settings.shutdown_grace_seconds,
        )

    def _count_model_request(self, provider: str, outcome: str) -> None:
        self.metrics.model_proxy_requests.labels(provider=provider, outcome=outcome).inc()

    async def _start_scale_out(self) -> None:
        from agentyard.queue.procrastinate_queue import ProcrastinateQueue, listen_for_events

        assert isinstance(self.queue, ProcrastinateQueue)
        await self.queue.start()
        self._background.append(
            asyncio.create_task(listen_for_events(self.settings.db_url, self.bus), name="listen")
        )
        if self.run_workers:
            self.queue.start_workers(self.settings.max_concurrent_runs)

    async def run_worker(self, concurrency: int) -> None:
        """``agentyard worker``: execute runs until cancelled (scale-out only)."""
        from agentyard.queue.procrastinate_queue import ProcrastinateQueue

        if not isinstance(self.queue, ProcrastinateQueue):
            raise RuntimeError("workers need AGENTYARD_DATABASE_URL=postgresql+psycopg://...")
        _widen_default_executor(concurrency)
        await asyncio.to_thread(migrate, self.settings.db_url)
        await self._start_sandbox()
        await self.queue.start()
        self._log_started()
        gc.freeze()  # as in start(): the worker's heartbeat must not wait on the collector
        await self.queue.run_workers(concurrency)

    async def _start_sandbox(self) -> None:
        """Only processes that execute runs need the sandbox (and its model proxy)."""
        self.sandbox = await start_sandbox(self.sandbox, self.settings)
        self.runner.sandbox = self.sandbox
        self._sandbox_started = True

    def _end_streams_on_exit(self) -> None:
        """On SIGTERM/SIGINT, shut down gracefully (:meth:`begin_shutdown`): every open SSE
        stream ends at once (a last comment, then the end of the body) rather than be cut
        mid-chunk by the HTTP server, so clients see a clean end and reconnect; runs have
        their grace period. A second signal ends the grace (:meth:`hurry`). The server's own
        handler (uvicorn's, installed before the application starts) still runs."""
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)
            if not callable(previous):
                continue

            def handler(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
                self.signalled(loop)
                previous(signum, frame)

            signal.signal(sig, handler)
            self._signal_handlers.append((sig, previous, handler))

    def signalled(self, loop: asyncio.AbstractEventLoop) -> None:
        """A shutdown signal arrived (in a signal handler: the work is scheduled on
        ``loop``): the first one begins the shutdown, any later one hurries it."""
        action = self.hurry if self._shutdown_begun else self.begin_shutdown
        self._shutdown_begun = True
        with contextlib.suppress(RuntimeError):  # the loop has already closed
            loop.call_soon_threadsafe(action)

    def begin_shutdown(self) -> None:
        """Stop taking runs; let those executing here finish within
        ``AGENTYARD_SHUTDOWN_GRACE_SECONDS`` (then they end ``interrupted``, statusDetail
        "server shutting down"); queued runs stay queued; every open SSE stream ends now."""
        self._shutdown_begun = True
        if self.bus.closing:
            return
        grace = self.settings.shutdown_grace_seconds
        log.info("shutting down", grace_seconds=grace)
        self.bus.close()
        self.queue.drain(grace)

    def hurry(self) -> None:
        """A second signal: interrupt what still executes now, and stop."""
        log.warning("shutting down now: interrupting the runs still executing")
        self.queue.hurry()
        self.queue.drain(0.0)  # if the first signal's drain had not begun yet

    def _restore_signal_handlers(self) -> None:
        for sig, previous, ours in reversed(self._signal_handlers):
            if signal.getsignal(sig) is ours:
                signal.signal(sig, previous)
        self._signal_handlers.clear()

    async def ready(self) -> dict[str, Any]:
        """Whether this process can serve: the database answers and has the schema this
        code expects, its queue runs (its slots or worker are alive), it is not shutting
        down. Cheap: one ping and one read of the schema version, each under a timeout."""
        problems: list[str] = []
        database: dict[str, Any] = {"reachable": False, "schemaCurrent": False}
        try:
            await asyncio.wait_for(self.store.ping(), timeout=_READY_TIMEOUT)
            database["reachable"] = True
            revision = await asyncio.wait_for(schema_revision(self.store), _READY_TIMEOUT)
            database["schemaCurrent"] = revision == SCHEMA_HEAD
            if not database["schemaCurrent"]:
                problems.append(
                    f"the database schema is at {revision or 'nothing'}, this code needs"
                    f" {SCHEMA_HEAD}: run 'agentyard migrate'"
                )
        except TimeoutError:
            problems.append("the database did not answer in time")
        except Exception as exc:
            problems.append(public_message(exc))
        running = bool(getattr(self.queue, "running", True))
        if self._shutdown_begun or self.bus.closing:
            problems.append("the server is shutting down")
        if not getattr(self.queue, "healthy", True):
            problems.append("execution capacity is broken (a worker or slot is down)")
        return {
            "ready": not problems,
            "problems": problems,
            "database": database,
            "queue": {
                "kind": "procrastinate" if self.scale_out else "local",
                "running": running,
                "executesRuns": self.run_workers,
            },
            "runtimes": {name: rt.availability().configured for name, rt in self.runtimes.items()},
        }

    async def metrics_text(self) -> bytes:
        """``/metrics``: this process's metrics and the database's run figures."""
        return await self.metrics.scrape(lambda: run_counts(self.store), timeout=_READY_TIMEOUT)

    async def stop(self) -> None:
        """Drain (at once unless a signal began the shutdown), then release everything.
        Idempotent: the HTTP server's shutdown and the application's lifespan may both
        call it."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop())
        await asyncio.shield(self._stopping)

    async def _stop(self) -> None:
        self.bus.close()
        self._restore_signal_handlers()
        await self.queue.stop()
        if self._dispatching:
            await self.dispatcher.stop()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.workspaces.close()
        if self._sandbox_started:
            await self.sandbox.stop()
        await self.store.close()
        log.info("agentyard stopped")

    async def ensure_admin_key(self) -> None:
        """A first start with no keys creates one, prints it and writes ``admin.key`` (0600)."""
        if await self.store.api_keys.count() > 0:
            return
        key_id, secret, key_hash = apikeys.generate()
        await self.store.api_keys.add(key_id, ADMIN_USER, "admin", key_hash)
        path = self.settings.resolved_data_dir / "admin.key"
        _write_private(path, secret + "\n")
        # Printed once, on purpose: this is how a new user learns the key.
        print(f"Created an API key for user '{ADMIN_USER}' (also in {path}): {secret}", flush=True)

    async def authenticate(self, secret: str) -> str | None:
        env_key = self.settings.api_key
        if env_key is not None and apikeys.same(secret, env_key.get_secret_value()):
            return ADMIN_USER
        return await self.store.api_keys.user_for_hash(apikeys.hash_key(secret))


def _widen_default_executor(runs: int) -> None:
    """The Codex SDK holds a default-executor thread per active run; give it room, so that
    ``to_thread`` work (killing process trees, git) never waits behind running agents."""
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=max(32, 4 * runs + 16)))


def _write_private(path: Path, content: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(content)
    os.chmod(path, 0o600)
