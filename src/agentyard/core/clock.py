"""UTC time and its ISO-8601 wire form."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime | None) -> str | None:
    """``2026-05-19T10:00:02.000Z``, or None."""
    if value is None:
        return None
    # isoformat is a C call where strftime formats through the C library: ~4x faster.
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"
