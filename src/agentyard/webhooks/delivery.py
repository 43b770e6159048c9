"""One delivery attempt, and what follows from it: delivered, retried later, or failed.

Shared by the embedded dispatcher and the scale-out job: whoever holds a delivery's lease
calls ``Deliverer.attempt``. A 2xx within the timeout is success; anything else (another
status, a timeout, a refused connection, a URL that no longer passes the rules) is retried
with exponential backoff and jitter until ``retry_for`` after the delivery was created.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import structlog

from agentyard.core.clock import iso, utcnow
from agentyard.core.errors import InvalidInput
from agentyard.crypto import SecretBox
from agentyard.store.webhooks import DELIVERED, FAILED, PENDING, WebhookStore
from agentyard.webhooks import signing
from agentyard.webhooks.urls import WebhookUrls

log = structlog.get_logger(__name__)

EXCERPT_BYTES = 1024
LOG_ENTRIES = 50
_STEPS = (1, 5, 24, 120, 720)
"""Delays in units of the base (5 s: 5 s, 25 s, 2 min, 10 min, 1 h), then the last one."""

Outcome = Callable[[str], None]
"""Told ``delivered``, ``retrying`` or ``failed`` after each attempt (metrics)."""


@dataclass(frozen=True)
class RetryPolicy:
    base_seconds: float = 5.0
    retry_for_seconds: float = 86400.0

    def delay(self, attempts: int) -> float:
        """Seconds before the next attempt, after ``attempts`` failed ones (±20% jitter)."""
        step = _STEPS[min(attempts, len(_STEPS)) - 1] if attempts > 0 else 1
        return self.base_seconds * step * random.uniform(0.8, 1.2)

    def next_attempt(self, created_at: datetime, attempts: int, now: datetime) -> datetime | None:
        """When to try again, or None once the retry window has closed."""
        at = now + timedelta(seconds=self.delay(attempts))
        if at > created_at + timedelta(seconds=self.retry_for_seconds):
            return None
        return at


@dataclass(frozen=True)
class Result:
    status_code: int | None
    error: str | None
    response: str | None
    ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class Deliverer:
    def __init__(
        self,
        store: WebhookStore,
        box: SecretBox,
        urls: WebhookUrls,
        *,
        timeout_seconds: float = 10.0,
        policy: RetryPolicy | None = None,
        on_outcome: Outcome | None = None,
    ) -> None:
        self.store = store
        self.box = box
        self.urls = urls
        self.timeout_seconds = timeout_seconds
        self.policy = policy or RetryPolicy()
        self.on_outcome = on_outcome

    @property
    def lease_seconds(self) -> float:
        """Long enough for the DNS check and the request, with room to record the outcome."""
        return self.timeout_seconds + 30.0

    async def claim(self, delivery_ids: list[str]) -> list[dict[str, Any]]:
        now = utcnow()
        lease = now + timedelta(seconds=self.lease_seconds)
        return await self.store.claim(now, lease, delivery_ids)

    async def attempt(self, delivery: dict[str, Any], client: httpx.AsyncClient) -> str:
        """Send a leased delivery once and record the outcome; returns its new state."""
        sealed = await self.store.signing_secret(delivery)
        secret = None if sealed is None else self.box.open(sealed)
        if secret is None:
            result = Result(None, "the signing secret is gone or cannot be decrypted", None, 0)
        else:
            result = await self._send(delivery, secret, client)
        now = utcnow()
        attempts = int(delivery["attempts"]) + 1
        entry = {
            "attempt": attempts,
            "at": iso(now),
            "statusCode": result.status_code,
            "error": result.error,
            "response": result.response,
            "durationMs": result.ms,
        }
        values: dict[str, Any] = {
            "attempts": attempts,
            "last_status_code": result.status_code,
            "last_error": result.error,
            "last_response": result.response,
            "attempt_log": [*(delivery.get("attempt_log") or []), entry][-LOG_ENTRIES:],
        }
        if result.ok:
            values.update(state=DELIVERED, delivered_at=now)
        else:
            retry_at = self.policy.next_attempt(delivery["created_at"], attempts, now)
            if retry_at is None:
                values["state"] = FAILED
            else:
                values.update(state=PENDING, next_attempt_at=retry_at)
        await self.store.record_attempt(delivery["delivery_id"], values)
        outcome = {DELIVERED: "delivered", FAILED: "failed"}.get(values["state"], "retrying")
        log.info(
            "webhook attempt",
            delivery_id=delivery["delivery_id"],
            endpoint_id=delivery["endpoint_id"],
            attempt=attempts,
            status_code=result.status_code,
            error=result.error,
            outcome=outcome,
        )
        if self.on_outcome is not None:
            try:
                self.on_outcome(outcome)
            except Exception:
                log.exception("webhook outcome hook failed")
        return str(values["state"])

    async def _send(
        self, delivery: dict[str, Any], secret: str, client: httpx.AsyncClient
    ) -> Result:
        started = time.monotonic()

        def elapsed() -> int:
            return int((time.monotonic() - started) * 1000)

        try:
            await self.urls.check(delivery["url"])
        except InvalidInput as exc:
            return Result(None, f"refused: {exc.message}", None, elapsed())
        body = json.dumps(delivery["payload"], separators=(",", ":")).encode()
        timestamp = int(time.time())
        headers = signing.headers(secret, delivery["delivery_id"], timestamp, body)
        try:
            # The whole exchange is bounded, not each read: a trickling receiver times out.
            async with (
                asyncio.timeout(self.timeout_seconds),
                client.stream(
                    "POST",
                    delivery["url"],
                    content=body,
                    headers=headers,
                    timeout=self.timeout_seconds,
                    follow_redirects=False,
                ) as response,
            ):
                excerpt = await _excerpt(response)
        except (TimeoutError, httpx.TimeoutException):
            return Result(None, f"timed out after {self.timeout_seconds:g} s", None, elapsed())
        except httpx.HTTPError as exc:
            return Result(None, f"{type(exc).__name__}: {exc}"[:300], None, elapsed())
        return Result(response.status_code, None, excerpt, elapsed())


async def _excerpt(response: httpx.Response) -> str:
    """The start of the response body (never more than ``EXCERPT_BYTES`` read)."""
    chunks = bytearray()
    async for chunk in response.aiter_raw():
        chunks += chunk
        if len(chunks) >= EXCERPT_BYTES:
            break
    return bytes(chunks[:EXCERPT_BYTES]).decode("utf-8", errors="replace")


def new_client() -> httpx.AsyncClient:
    """No proxies from the environment, no redirects, no cookies kept between receivers."""
    return httpx.AsyncClient(trust_env=False, follow_redirects=False)
