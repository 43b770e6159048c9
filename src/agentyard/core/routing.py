"""Which runtime runs a model: an explicit ``agent`` wins, else the model id decides."""

from __future__ import annotations

from agentyard.core.errors import InvalidInput

CLAUDE = "claude"
CODEX = "codex"
COMMAND = "command"
GEMINI = "gemini"
AGENTS = (CLAUDE, CODEX, COMMAND, GEMINI)


def infer_agent(model: str | None) -> str:
    if not model:
        return CLAUDE
    m = model.lower()
    tail = m.rsplit("/", 1)[-1]
    if tail.startswith("gemini-"):
        return GEMINI
    if (
        "codex" in m
        or "openai/" in m
        or "/gpt-" in m
        or m.startswith("gpt-")
        or tail.startswith(("o1", "o3", "o4"))
    ):
        return CODEX
    return CLAUDE


def resolve_agent(agent: str | None, model: str | None, supported: tuple[str, ...] = AGENTS) -> str:
    """The runtime for a request; an unknown ``agent`` is a 400 naming the supported ones."""
    if agent is None:
        return infer_agent(model)
    if agent not in supported:
        raise InvalidInput(f"unknown agent {agent!r}; supported agents: {', '.join(supported)}")
    return agent


_FAMILIES = {CLAUDE: "Claude", CODEX: "OpenAI", GEMINI: "Gemini"}


def check_native_model(agent: str, model: str | None) -> None:
    """For a runtime talking to its provider's own API: a model id that plainly belongs to
    another provider is a 400 naming both (behind a gateway, any name may be served)."""
    if not model or agent not in _FAMILIES:
        return
    inferred = infer_agent(model)
    tail = model.lower().rsplit("/", 1)[-1]
    claude_named = tail.startswith("claude")
    if (inferred != CLAUDE and inferred != agent) or (claude_named and agent != CLAUDE):
        owner = CLAUDE if claude_named else inferred
        raise InvalidInput(
            f"'model' {model!r} is a {_FAMILIES[owner]} model, not one agent {agent!r} runs; "
            f"use agent {owner!r} or another model"
        )
