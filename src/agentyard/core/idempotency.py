"""Idempotency keys (Stripe's semantics) for the requests that create runs.

The same key with the same request replays the first response; while the first is still in
flight, 409; with a different request, 422 naming what differs. A key belongs to one user
and lives 24 hours. The record is written in the transaction that inserts the run(s), so a
crash never leaves one without the other.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from agentyard.core.errors import InvalidInput, Unprocessable
from agentyard.core.models import Run

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
LIFETIME = timedelta(hours=24)
MAX_KEY_LENGTH = 255


def parse_key(value: str | None) -> str | None:
    """The header's key, or None without one; 400 for a key no client means to send."""
    if value is None:
        return None
    key = value.strip()
    if not key:
        raise InvalidInput(f"'{HEADER}' must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(f"'{HEADER}' must be at most {MAX_KEY_LENGTH} characters")
    if any(not 0x20 <= ord(c) < 0x7F for c in key):
        raise InvalidInput(f"'{HEADER}' must be printable ASCII")
    return key


def fingerprint(mac_key: bytes, body: Mapping[str, Any]) -> dict[str, str]:
    """Per top-level field, a keyed hash of its value: enough to tell which fields differ
    between two requests, nothing to learn a value (a secret, a prompt) from."""
    return {
        name: hmac.new(
            mac_key, json.dumps(value, sort_keys=True, separators=(",", ":")).encode(), "sha256"
        ).hexdigest()[:32]
        for name, value in body.items()
    }


@dataclass(frozen=True)
class Stored:
    route: str
    fingerprint: dict[str, str]
    status_code: int
    body: dict[str, Any]


@dataclass
class Receipt:
    """What a create request keeps under its key: how to answer it again."""

    key: str
    route: str
    """The method and path it was first used on (e.g. ``POST /api/v1/tasks``)."""
    fingerprint: dict[str, str]
    render: Callable[[list[Run]], dict[str, Any]] = field(repr=False)
    """The response body, from the runs about to be inserted (known before the insert)."""
    status_code: int = 200

    def check_replay(self, stored: Stored) -> None:
        """422 unless ``stored`` was made by the same request."""
        if stored.route != self.route:
            raise Unprocessable(
                f"this {HEADER} was first used on {stored.route}, not {self.route}; "
                "use a new key for a new request"
            )
        names = sorted(
            name
            for name in stored.fingerprint.keys() | self.fingerprint.keys()
            if stored.fingerprint.get(name) != self.fingerprint.get(name)
        )
        if names:
            listed = ", ".join(f"'{n}'" for n in names)
            raise Unprocessable(
                f"this {HEADER} was first used with a different request body "
                f"(it differs in {listed}); use a new key for a new request"
            )


class KeyInUse(Exception):
    """Another request inserted the same key first (it committed, or is committing)."""
