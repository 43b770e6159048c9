"""The runtimes this server offers, built from settings."""

from __future__ import annotations

from agentyard.runtimes.base import AgentRuntime
from agentyard.runtimes.claude import ClaudeRuntime
from agentyard.runtimes.command import CommandRuntime, load_commands
from agentyard.settings import Settings


def build_runtimes(settings: Settings) -> dict[str, AgentRuntime]:
    key = settings.anthropic_api_key
    claude = ClaudeRuntime(
        anthropic_base_url=settings.anthropic_base_url,
        anthropic_api_key=key.get_secret_value() if key else None,
        default_model=settings.default_model,
        max_turns=settings.claude_max_turns,
        system_prompt_append=settings.claude_system_prompt_append,
        extra_env=settings.claude_env,
    )
    command = CommandRuntime(
        load_commands(settings.commands, settings.commands_file), settings.default_command
    )
    return {"claude": claude, "command": command}
