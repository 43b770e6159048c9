"""Token prices: for runtimes whose SDK reports tokens but no cost (Codex), and for the model
proxy's metering of a run's cost as it goes (``maxCostUsd``).

Prices are US dollars per million tokens. ``DEFAULT_PRICES`` holds figures for a few OpenAI
slugs and is only a starting point: list prices change and gateways charge their own, so the
server takes a table that is laid over these defaults (``CodexRuntime(prices=...)``). A model
found in neither is priced at ``DEFAULT_PRICE`` rather than reported as free.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelPrice:
    """US dollars per million tokens. Cached input is the part of the input served from cache."""

    input_per_mtok: float
    cached_input_per_mtok: float
    output_per_mtok: float


DEFAULT_PRICE = ModelPrice(1.25, 0.125, 10.0)
"""For models with no entry: the GPT-5 tier, so an unknown model is never counted as free."""

DEFAULT_PRICES: Mapping[str, ModelPrice] = {
    # OpenAI list prices of the GPT-5 family as last published to us.
    "gpt-5": ModelPrice(1.25, 0.125, 10.0),
    "gpt-5-codex": ModelPrice(1.25, 0.125, 10.0),
    "gpt-5-mini": ModelPrice(0.25, 0.025, 2.0),
    "gpt-5-nano": ModelPrice(0.05, 0.005, 0.4),
    "gpt-5.1": ModelPrice(1.25, 0.125, 10.0),
    "gpt-5.1-codex": ModelPrice(1.25, 0.125, 10.0),
    "gpt-5.1-codex-mini": ModelPrice(0.25, 0.025, 2.0),
    "gpt-5.2": ModelPrice(1.75, 0.175, 14.0),
    "gpt-4.1": ModelPrice(2.0, 0.5, 8.0),
    "o3": ModelPrice(2.0, 0.5, 8.0),
    "o4-mini": ModelPrice(1.1, 0.275, 4.4),
    # Slugs of the codex 0.163 catalog with no list price known to us: configure them.
    "gpt-5.5": ModelPrice(1.75, 0.175, 14.0),
    # Anthropic list prices (cache writes are counted as input).
    "claude-opus-4": ModelPrice(15.0, 1.5, 75.0),
    "claude-opus-4-1": ModelPrice(15.0, 1.5, 75.0),
    "claude-opus-4-5": ModelPrice(5.0, 0.5, 25.0),
    "claude-sonnet-4": ModelPrice(3.0, 0.3, 15.0),
    "claude-sonnet-4-5": ModelPrice(3.0, 0.3, 15.0),
    "claude-haiku-4-5": ModelPrice(1.0, 0.1, 5.0),
    "claude-3-5-haiku": ModelPrice(0.8, 0.08, 4.0),
    # Google list prices (up to 200k tokens of prompt).
    "gemini-2.5-pro": ModelPrice(1.25, 0.31, 10.0),
    "gemini-2.5-flash": ModelPrice(0.3, 0.075, 2.5),
    "gemini-2.5-flash-lite": ModelPrice(0.1, 0.025, 0.4),
}


def price_for(model: str | None, prices: Mapping[str, ModelPrice] | None = None) -> ModelPrice:
    """The price of ``model``: configured prices first, then the defaults, else ``DEFAULT_PRICE``.

    An ``openai/`` prefix is ignored, and a dated or suffixed slug (``gpt-5-mini-2025-08-07``)
    takes the price of the longest known slug it starts with.
    """
    table = {**DEFAULT_PRICES, **(prices or {})}
    if not model:
        return DEFAULT_PRICE
    slug = model.lower().removeprefix("openai/")
    if slug in table:
        return table[slug]
    prefixes = [known for known in table if slug.startswith(known + "-")]
    return table[max(prefixes, key=len)] if prefixes else DEFAULT_PRICE


def cost_usd(usage: Mapping[str, Any], price: ModelPrice) -> float:
    """The cost of ``usage``, in the runtimes' camelCase usage vocabulary: ``inputTokens``
    including ``cachedInputTokens``, and ``outputTokens`` including reasoning, as OpenAI
    counts them."""
    input_tokens = _count(usage, "inputTokens")
    cached = min(_count(usage, "cachedInputTokens"), input_tokens)
    output_tokens = _count(usage, "outputTokens")
    dollars = (
        (input_tokens - cached) * price.input_per_mtok
        + cached * price.cached_input_per_mtok
        + output_tokens * price.output_per_mtok
    ) / 1_000_000
    return round(dollars, 8)


def _count(usage: Mapping[str, Any], key: str) -> int:
    value = usage.get(key)
    return max(0, int(value)) if isinstance(value, (int, float)) else 0
