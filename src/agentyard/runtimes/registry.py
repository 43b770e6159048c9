"""The runtimes this server offers, built from settings."""

from __future__ import annotations

from agentyard import __version__
from agentyard.runtimes.acp import AcpRuntime, CommandProfile, load_agents
from agentyard.runtimes.acp_gemini import DEFAULT_BASE_URL as GEMINI_URL
from agentyard.runtimes.acp_gemini import GeminiProfile
from agentyard.runtimes.acp_session import Policy
from agentyard.runtimes.base import AgentRuntime
from agentyard.runtimes.claude import DEFAULT_BASE_URL as CLAUDE_URL
from agentyard.runtimes.claude import ClaudeRuntime
from agentyard.runtimes.codex import DEFAULT_BASE_URL as CODEX_URL
from agentyard.runtimes.codex import CodexRuntime
from agentyard.runtimes.command import CommandRuntime, load_commands
from agentyard.settings import Settings


def build_runtimes(settings: Settings) -> dict[str, AgentRuntime]:
    """The runtimes by name, in the order errors and ``/agents`` list them."""
    key = settings.anthropic_api_key
    claude = ClaudeRuntime(
        anthropic_base_url=settings.anthropic_base_url,
        anthropic_api_key=key.get_secret_value() if key else None,
        default_model=settings.default_model,
        max_turns=settings.claude_max_turns,
        system_prompt_append=settings.claude_system_prompt_append,
        extra_env=settings.claude_env,
    )
    codex_key = settings.codex_api_key
    codex = CodexRuntime(
        base_url=settings.codex_base_url,
        api_key=codex_key.get_secret_value() if codex_key else None,
        default_model=settings.codex_default_model,
        prices=settings.codex_prices,
        max_retries=settings.codex_max_retries,
    )
    models: dict[str, tuple[str, str, tuple[str, str, str]]] = {}
    if claude.anthropic_api_key:
        upstream = (claude.anthropic_base_url or CLAUDE_URL, claude.anthropic_api_key, "x-api-key")
        models["anthropic"] = ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", upstream)
    if codex.api_key:
        upstream = (codex.base_url or CODEX_URL, codex.api_key, "bearer")
        models["openai"] = ("OPENAI_BASE_URL", "OPENAI_API_KEY", upstream)
    gemini_key = settings.gemini_api_key
    gemini = GeminiProfile(
        api_key=gemini_key.get_secret_value() if gemini_key else None,
        base_url=settings.gemini_base_url,
        default_model=settings.gemini_default_model,
        cli_dir=settings.gemini_cli_dir,
    )
    if gemini.api_key:
        upstream = (gemini.base_url or GEMINI_URL, gemini.api_key, "x-goog-api-key")
        models["gemini"] = ("GOOGLE_GEMINI_BASE_URL", "GEMINI_API_KEY", upstream)
    command = CommandRuntime(
        load_commands(settings.commands, settings.commands_file), settings.default_command, models
    )
    runtimes: dict[str, AgentRuntime] = {"claude": claude, "codex": codex, "command": command}
    runtimes["gemini"] = acp_runtime(settings, "gemini", gemini, settings.acp_permission)
    for name, spec in load_agents(settings.acp_agents).items():
        if name in runtimes:
            raise ValueError(f"AGENTYARD_ACP_AGENTS: {name!r} is a built-in agent's name")
        profile = CommandProfile(name, spec)
        runtimes[name] = acp_runtime(settings, name, profile, spec.permission)
    return runtimes


def acp_runtime(
    settings: Settings,
    name: str,
    profile: GeminiProfile | CommandProfile,
    permission: Policy | None,
) -> AcpRuntime:
    return AcpRuntime(
        name,
        profile,
        idle_seconds=settings.acp_idle_seconds,
        cancel_grace_seconds=settings.acp_cancel_grace_seconds,
        permission=permission or settings.acp_permission,
        version=__version__,
    )
