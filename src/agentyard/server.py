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
from agentyard.queue.base import TaskQueue
from agentyard.queue.local import LocalQueue
from agentyard.reconcile import interrupt_orphans
from agentyard.runner import Runner
from agentyard.runtimes.base import INSTALLATION_ENV, AgentRuntime
from agentyard.runtimes.processes import installation_id
from agentyard.runtimes.registry import build_runtimes
from agentyard.sandbox.factory import build_sandbox, start_sandbox
from agentyard.service import Service, TaskLimits
from agentyard.settings import Settings
from agentyard.store.db import create_engine, is_sqlite, migrate
from agentyard.store.faults import RetryPolicy, public_message
from agentyard.store.store import Store
from agentyard.store.webhooks import WebhookStore
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
        self.store = Store(create_engine(settings.db_url))
        self.bus = LocalBus()
        self.events = EventLog(self.store, self.bus)
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
        )
        """Its ``on_outcome`` is the hook for a deliveries counter."""
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
        # Everything loaded so far (the application, SQLAlchemy, the SDKs) lives as long as
        # the process: out of the collector's sight, a full collection takes a few ms rather
        # than the tens of ms that stall every request while a chatty run allocates.
        gc.freeze()

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
        gc.freeze()  # as in start(): the worker's heartbeat must not wait on the collector
        await self.queue.run_workers(concurrency)

    async def _start_sandbox(self) -> None:
        """Only processes that execute runs need the sandbox (and its model proxy)."""
        self.sandbox = await start_sandbox(self.sandbox, self.settings)
        self.runner.sandbox = self.sandbox
        self._sandbox_started = True

    def _end_streams_on_exit(self) -> None:
        """On SIGTERM/SIGINT, end every open SSE stream at once (a last comment, then the
        end of the body) rather than let the HTTP server cut them mid-chunk after its grace
        period: clients see a clean end and reconnect. The server's own handler (uvicorn's,
        installed before the application starts) still runs."""
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)
            if not callable(previous):
                continue

            def handler(signum: int, frame: FrameType | None, previous: Any = previous) -> None:
                with contextlib.suppress(RuntimeError):  # the loop has already closed
                    loop.call_soon_threadsafe(self.bus.close)
                previous(signum, frame)

            signal.signal(sig, handler)
            self._signal_handlers.append((sig, previous, handler))

    def _restore_signal_handlers(self) -> None:
        for sig, previous, ours in reversed(self._signal_handlers):
            if signal.getsignal(sig) is ours:
                signal.signal(sig, previous)
        self._signal_handlers.clear()

    async def ready(self) -> dict[str, Any]:
        """Whether this process can serve: the database answers, its slots are alive."""
        problems: list[str] = []
        try:
            await asyncio.wait_for(self.store.ping(), timeout=5)
        except Exception as exc:
            problems.append(public_message(exc))
        healthy = getattr(self.queue, "healthy", True)
        if not healthy:
            problems.append("execution capacity is broken (a worker or slot is down)")
        return {"ready": not problems, "problems": problems}

    async def stop(self) -> None:
        self.bus.close()
        self._restore_signal_handlers()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._dispatching:
            await self.dispatcher.stop()
        await self.queue.stop()
        if self._sandbox_started:
            await self.sandbox.stop()
        await self.store.close()

    async def ensure_admin_key(self) -> None:
        """A first start with no keys creates one, prints it and writes ``admin.key`` (0600)."""
        if await self.store.count_api_keys() > 0:
            return
        key_id, secret, key_hash = apikeys.generate()
        await self.store.add_api_key(key_id, ADMIN_USER, "admin", key_hash)
        path = self.settings.resolved_data_dir / "admin.key"
        _write_private(path, secret + "\n")
        # Printed once, on purpose: this is how a new user learns the key.
        print(f"Created an API key for user '{ADMIN_USER}' (also in {path}): {secret}", flush=True)

    async def authenticate(self, secret: str) -> str | None:
        env_key = self.settings.api_key
        if env_key is not None and apikeys.same(secret, env_key.get_secret_value()):
            return ADMIN_USER
        return await self.store.user_for_key_hash(apikeys.hash_key(secret))


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
