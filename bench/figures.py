"""What every benchmark prints beside its figures: percentiles, and the machine they ran on."""

from __future__ import annotations

import os


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def machine() -> str:
    one, five, fifteen = os.getloadavg()
    return f"cores: {os.cpu_count()}, load average: {one:.2f} {five:.2f} {fifteen:.2f}"
