"""Prometheus metrics of one Agentyard: counters and histograms kept as things happen, and
gauges read from the database at scrape time.

Each ``Agentyard`` has its own ``Metrics`` (its own registry, never prometheus_client's
global one), so that several applications in one process, as in the tests, never collide.
What the database knows (runs by status and agent, the queue's depth and oldest wait) is
not kept in memory: ``/metrics`` reads it with one grouped query under a timeout, so that
every process behind a load balancer reports the same, cluster-wide, figures.

Counters of things another part of the server does are defined here and incremented there:
``webhook_deliveries`` (labels ``outcome``: ``delivered``, ``failed``, ``retrying``) is for
webhook delivery, one increment per delivery attempt's outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from agentyard.core.clock import utcnow

CONTENT_TYPE = CONTENT_TYPE_LATEST

_DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
_WAIT_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800)
_DB_ERRORS = "agentyard_metrics_database_errors"
_COST_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 25)


@dataclass(frozen=True)
class RunCount:
    """One (agent, status) group of the runs table."""

    agent: str
    status: str
    count: int
    oldest_created_at: datetime | None


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.runs_finished = Counter(
            "agentyard_runs_finished",
            "Runs this process ended, by agent and terminal status.",
            ["agent", "status"],
            registry=r,
        )
        self.run_duration = Histogram(
            "agentyard_run_duration_seconds",
            "Execution time of the runs this process ended (start to end).",
            ["agent", "status"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.run_cost = Histogram(
            "agentyard_run_cost_usd",
            "Cost in USD of the runs this process ended, where the agent reported one.",
            ["agent"],
            buckets=_COST_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "agentyard_queue_wait_seconds",
            "Time runs waited queued before this process started them.",
            ["agent"],
            buckets=_WAIT_BUCKETS,
            registry=r,
        )
        self.events_appended = Counter(
            "agentyard_events_appended",
            "Run events stored by this process.",
            registry=r,
        )
        self.sse_subscribers = Gauge(
            "agentyard_sse_subscribers",
            "Open event streams (SSE) served by this process.",
            registry=r,
        )
        self.webhook_deliveries = Counter(
            "agentyard_webhook_deliveries",
            "Webhook delivery attempts by outcome (delivered, failed, retrying).",
            ["outcome"],
            registry=r,
        )
        self.model_proxy_requests = Counter(
            "agentyard_model_proxy_requests",
            "Requests sandboxed agents sent through the model proxy, by provider and outcome.",
            ["provider", "outcome"],
            registry=r,
        )
        self.http_requests = Counter(
            "agentyard_http_requests",
            "HTTP requests answered, by method and status code.",
            ["method", "status"],
            registry=r,
        )
        self.database_scrape_errors = Counter(
            _DB_ERRORS,
            "Scrapes whose database-derived figures could not be read (timeout or failure).",
            registry=r,
        )

    def run_ended(
        self, agent: str, status: str, seconds: float | None, cost_usd: float | None
    ) -> None:
        self.runs_finished.labels(agent=agent, status=status).inc()
        if seconds is not None:
            self.run_duration.labels(agent=agent, status=status).observe(max(0.0, seconds))
        if cost_usd is not None:
            self.run_cost.labels(agent=agent).observe(max(0.0, cost_usd))

    def render(self, counts: Iterable[RunCount] | None, *, database: bool = True) -> bytes:
        """The exposition text: this process's metrics, and the database's figures when
        ``counts`` could be read (``None``: left out, and the error counter says so).
        ``database=False`` (a worker): the database figures are not this process's to
        report, and their error counter is left out too."""
        if not database:
            return generate_latest(_Scrape(self.registry, None, skip={_DB_ERRORS}))
        return generate_latest(_Scrape(self.registry, counts))

    async def scrape(
        self, read_counts: Callable[[], Awaitable[list[RunCount]]], timeout: float = 2.0
    ) -> bytes:
        """Read the database's figures (bounded by ``timeout``) and render everything."""
        try:
            counts: list[RunCount] | None = await asyncio.wait_for(read_counts(), timeout)
        except Exception:
            self.database_scrape_errors.inc()
            counts = None
        return self.render(counts)


class _Scrape:
    """One scrape: the registry's metrics, then the gauges read from the database."""

    def __init__(
        self,
        registry: CollectorRegistry,
        counts: Iterable[RunCount] | None,
        skip: frozenset[str] | set[str] = frozenset(),
    ) -> None:
        self.registry = registry
        self.counts = None if counts is None else list(counts)
        self.skip = skip

    def collect(self) -> Iterator[Metric]:
        yield from (m for m in self.registry.collect() if m.name not in self.skip)
        if self.counts is None:
            return
        runs = GaugeMetricFamily(
            "agentyard_runs",
            "Runs in the database, by agent and status.",
            labels=["agent", "status"],
        )
        depth = GaugeMetricFamily(
            "agentyard_queue_depth", "Runs queued in the database, by agent.", labels=["agent"]
        )
        oldest = GaugeMetricFamily(
            "agentyard_queue_oldest_wait_seconds",
            "How long the oldest queued run has waited, by agent.",
            labels=["agent"],
        )
        now = utcnow()
        for item in self.counts:
            runs.add_metric([item.agent, item.status], item.count)
            if item.status == "queued":
                depth.add_metric([item.agent], item.count)
                if item.oldest_created_at is not None:
                    waited = (now - item.oldest_created_at).total_seconds()
                    oldest.add_metric([item.agent], max(0.0, waited))
        yield runs
        yield depth
        yield oldest
