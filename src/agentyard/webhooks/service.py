"""The webhook endpoints' use cases: register, list, get, delete, deliveries, redeliver.

No HTTP, no SQL. The signing secret is returned by ``register`` only; it is stored sealed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from agentyard.core import ids
from agentyard.core.clock import iso, utcnow
from agentyard.core.errors import Forbidden, InvalidInput, NotFound
from agentyard.crypto import SecretBox
from agentyard.store.webhooks import WebhookStore
from agentyard.webhooks import signing
from agentyard.webhooks.payload import EVENTS
from agentyard.webhooks.urls import WebhookUrls

MAX_ENDPOINTS = 20
MAX_DESCRIPTION = 500
_EVENTS = ", ".join(("*", *EVENTS))

Redelivered = Callable[[dict[str, Any]], Awaitable[None]]
"""Told of a delivery made due again (the embedded dispatcher wakes, a job is deferred)."""


class Webhooks:
    def __init__(
        self,
        store: WebhookStore,
        box: SecretBox,
        urls: WebhookUrls,
        redelivered: Redelivered | None = None,
    ) -> None:
        self.store = store
        self.box = box
        self.urls = urls
        self.redelivered = redelivered

    async def register(
        self, user_id: str, url: str, events: Any, description: str | None
    ) -> dict[str, Any]:
        wanted = parse_events(events)
        if description is not None and len(description) > MAX_DESCRIPTION:
            raise InvalidInput(f"'description' must be at most {MAX_DESCRIPTION} characters")
        url = self.urls.parse(url)
        await self.urls.check(url)
        secret = signing.new_secret()
        row = {
            "endpoint_id": ids.new_webhook_endpoint_id(),
            "user_id": user_id,
            "url": url,
            "events": wanted,
            "description": description,
            "secret_sealed": self.box.seal(secret),
            "created_at": utcnow(),
        }
        if not await self.store.add_endpoint(row, MAX_ENDPOINTS):
            raise InvalidInput(f"a user may register at most {MAX_ENDPOINTS} webhook endpoints")
        return {**endpoint_view(row), "secret": secret}

    async def endpoints(self, user_id: str) -> list[dict[str, Any]]:
        return [endpoint_view(e) for e in await self.store.list_endpoints(user_id)]

    async def get(self, user_id: str, endpoint_id: str) -> dict[str, Any]:
        return endpoint_view(await self._owned(user_id, endpoint_id))

    async def delete(self, user_id: str, endpoint_id: str) -> None:
        await self._owned(user_id, endpoint_id)
        await self.store.delete_endpoint(endpoint_id)

    async def deliveries(
        self, user_id: str, endpoint_id: str, page: int, limit: int
    ) -> tuple[list[dict[str, Any]], bool]:
        await self._owned(user_id, endpoint_id)
        rows = await self.store.list_deliveries(endpoint_id, (page - 1) * limit, limit + 1)
        return [delivery_view(r) for r in rows[:limit]], len(rows) > limit

    async def redeliver(self, user_id: str, endpoint_id: str, delivery_id: str) -> dict[str, Any]:
        """A new attempt now, whatever the delivery's state (same ``webhook-id``)."""
        await self._owned(user_id, endpoint_id)
        delivery = await self.store.get_delivery(delivery_id)
        if delivery is None or delivery["endpoint_id"] != endpoint_id:
            raise NotFound(f"Delivery {delivery_id} not found")
        await self.store.redeliver(delivery_id, utcnow())
        after = await self.store.get_delivery(delivery_id)
        assert after is not None
        if self.redelivered is not None:
            await self.redelivered(after)
        return delivery_view(after)

    async def _owned(self, user_id: str, endpoint_id: str) -> dict[str, Any]:
        endpoint = await self.store.get_endpoint(endpoint_id)
        if endpoint is None:
            raise NotFound(f"Webhook endpoint {endpoint_id} not found")
        if endpoint["user_id"] != user_id:
            raise Forbidden("Webhook endpoint belongs to a different user")
        return endpoint


def parse_events(value: Any) -> list[str]:
    if value is None:
        return ["*"]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InvalidInput(f"'events' must be a non-empty array of: {_EVENTS}")
    unknown = [v for v in value if v != "*" and v not in EVENTS]
    if unknown:
        raise InvalidInput(f"'events' has unknown entries {unknown[:5]!r}; use any of: {_EVENTS}")
    return ["*"] if "*" in value else sorted(set(value), key=EVENTS.index)


def endpoint_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["endpoint_id"],
        "url": row["url"],
        "events": row["events"],
        "description": row["description"],
        "createdAt": iso(row["created_at"]),
    }


def delivery_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["delivery_id"],
        "endpointId": row["endpoint_id"],
        "runId": row["run_id"],
        "type": row["type"],
        "state": row["state"],
        "attempts": row["attempts"],
        "nextAttemptAt": iso(row["next_attempt_at"]) if row["state"] == "pending" else None,
        "lastStatusCode": row["last_status_code"],
        "lastError": row["last_error"],
        "lastResponse": row["last_response"],
        "attemptLog": list(reversed(row["attempt_log"] or [])),
        "payload": row["payload"],
        "createdAt": iso(row["created_at"]),
        "deliveredAt": iso(row["delivered_at"]),
    }
