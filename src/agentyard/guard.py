"""RunGuard: one run's limits (``maxDuration``, ``maxCostUsd``) and what its model answers.

The model proxy tells the guard of every model response of the run (its status) and of the
tokens each response used. From that the guard

- stops the run at once when the provider rejects the key (401/403), with an error naming
  the setting to fix, rather than let the agent retry for minutes;
- makes the provider's retries visible: a ``data-retry`` event and the run's ``statusDetail``
  ("model overloaded, retrying (attempt 2)");
- meters the run's cost, and stops the run at its ``maxCostUsd``;

and it stops the run at its ``maxDuration``. A stopped run's work is still saved: the runner
only ends the agent, then commits (and pushes) as for any run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agentyard.core import details
from agentyard.core.events import Event
from agentyard.runtimes.pricing import ModelPrice, cost_usd, price_for

KEY_SETTINGS = {
    "anthropic": "ANTHROPIC_API_KEY (or AGENTYARD_ANTHROPIC_API_KEY)",
    "openai": "OPENAI_API_KEY (or AGENTYARD_CODEX_API_KEY)",
    "gemini": "GEMINI_API_KEY (or AGENTYARD_GEMINI_API_KEY)",
}
_RETRIED = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
DATA_RETRY = "data-retry"

Notify = Callable[[Event | None, str], Awaitable[None]]
"""Store an event (or none) and the run's new ``statusDetail``."""


@dataclass(frozen=True)
class Stop:
    error: str
    detail: str


class RunGuard:
    def __init__(
        self,
        *,
        max_duration: float | None = None,
        max_cost_usd: float | None = None,
        prices: Mapping[str, ModelPrice] | None = None,
    ) -> None:
        self.max_duration = max_duration
        self.max_cost_usd = max_cost_usd
        self.prices = prices
        self.cost_usd = 0.0
        """What the run's model responses cost so far, as metered at the proxy."""
        self.metered = False
        self.stopped: Stop | None = None
        self._failures = 0
        self._notes: list[tuple[Event | None, str]] = []
        self._wake = asyncio.Event()

    # -- told by the model proxy (synchronously, on the event loop) -----------------------

    def response(self, route: str, status: int) -> None:
        if status in (401, 403):
            setting = KEY_SETTINGS.get(route, "the provider's API key setting")
            self._stop(
                f"the model provider rejected the API key (HTTP {status}); check {setting}",
                details.KEY_REJECTED,
            )
        elif status in _RETRIED:
            self._failures += 1
            attempt = self._failures + 1
            event: Event = {
                "type": DATA_RETRY,
                "data": {"provider": route, "status": status, "attempt": attempt},
            }
            self._note(event, details.retrying(attempt, status))
        elif 200 <= status < 300 and self._failures:
            self._failures = 0
            self._note(None, details.WORKING)

    def usage(self, route: str, model: str | None, usage: Mapping[str, Any]) -> None:
        self.metered = True
        self.cost_usd = round(self.cost_usd + cost_usd(usage, price_for(model, self.prices)), 8)
        if self.max_cost_usd is not None and self.cost_usd >= self.max_cost_usd:
            self._stop(
                f"maxCostUsd reached: the run's model use cost ${self.cost_usd:.4f} of its "
                f"${self.max_cost_usd:g}; the agent was stopped and its work saved",
                details.MAX_COST,
            )

    # -- the runner's side ---------------------------------------------------------------

    async def watch(self, notify: Notify) -> Stop:
        """Pass notes on until the run must stop; the reason."""
        loop = asyncio.get_running_loop()
        deadline = None if self.max_duration is None else loop.time() + self.max_duration
        while True:
            while self._notes and self.stopped is None:
                event, detail = self._notes.pop(0)
                await notify(event, detail)
            if self.stopped is not None:
                return self.stopped
            self._wake.clear()
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                self._stop(
                    f"maxDuration reached: the agent was stopped after {self.max_duration:g} s "
                    "and its work saved",
                    details.MAX_DURATION,
                )

    def _note(self, event: Event | None, detail: str) -> None:
        self._notes.append((event, detail))
        self._wake.set()

    def _stop(self, error: str, detail: str) -> None:
        if self.stopped is None:
            self.stopped = Stop(error, detail)
        self._wake.set()
