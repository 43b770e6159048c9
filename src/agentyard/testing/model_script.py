"""Scripts for the scripted model server: their shape, and which turn a request gets.

See ``agentyard.testing.scripted_model`` for the format. Choosing a turn is stateless: the
current prompt picks the scenario, the number of model turns since it picks the step.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FINAL_TEXT = "done"
"""The answer once a scenario has no turn left (or when no scenario applies)."""

SIDE_TEXT = "Scripted session"
"""The answer to side requests (no tools offered: titles, summaries)."""

ANTHROPIC = "anthropic"
OPENAI = "openai"
GEMINI = "gemini"

# Context the CLIs add to user messages; it is not the prompt, so it never selects a scenario.
_WRAPPER_BLOCKS = re.compile(
    r"<(system-reminder|environment_context|user_instructions|permissions instructions|"
    r"collaboration_mode|skills_instructions|apps_instructions|turn_aborted|session_context)>.*?</\1>",
    re.DOTALL,
)
_AGENTS_MD_PREFIX = "# AGENTS.md instructions for "
_INTERRUPTED = re.compile(r"^\[Request interrupted by user[^\]]*\]$")

# Where the CLIs state the working directory (see ``detect_cwd``).
_CODEX_CWD = re.compile(r"<cwd>\s*([^<\n]+?)\s*</cwd>")
# Gemini CLI: the first entry under "- **Workspace Directories:**" in its <session_context>.
_GEMINI_CWD = re.compile(
    r"Workspace Directories:\**[ \t]*\n[ \t]*-[ \t]*(/[^\n]*?)[ \t]*$", re.MULTILINE
)
_CLAUDE_CWD = (
    re.compile(r"^[ \t]*-?[ \t]*Primary working directory:[ \t]*(/[^\n]*?)[ \t]*$", re.MULTILINE),
    re.compile(r"^[ \t]*-?[ \t]*Working directory:[ \t]*(/[^\n]*?)[ \t]*$", re.MULTILINE),
)


_APIS = (ANTHROPIC, OPENAI, GEMINI)


class ScriptError(ValueError):
    """The script is not of the documented shape."""


# --------------------------------------------------------------------------- the script


def load_script(script: Mapping[str, Any] | Path | str) -> dict[str, Any]:
    """Read (from a JSON file, if given a path) and check a script; returns a plain dict."""
    if isinstance(script, (Path, str)):
        try:
            data: Any = json.loads(Path(script).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ScriptError(f"cannot read script {str(script)!r}: {exc}") from exc
    else:
        data = json.loads(json.dumps(script))  # a private deep copy, JSON types only
    if not isinstance(data, dict) or not isinstance(data.get("scenarios"), list):
        raise ScriptError('a script is an object with a "scenarios" list')
    for i, scenario in enumerate(data["scenarios"]):
        where = f"scenarios[{i}]"
        if not isinstance(scenario, dict):
            raise ScriptError(f"{where} is not an object")
        match = scenario.get("match")
        if match is not None:
            if not isinstance(match, str):
                raise ScriptError(f"{where}.match is not a string")
            try:
                re.compile(match)
            except re.error as exc:
                raise ScriptError(f"{where}.match is not a valid regex: {exc}") from exc
        turns = scenario.get("turns", [])
        if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
            raise ScriptError(f"{where}.turns is not a list of objects")
        for j, turn in enumerate(turns):
            _check_turn(turn, f"{where}.turns[{j}]")
    return data


def _check_turn(turn: Mapping[str, Any], where: str) -> None:
    delay = turn.get("delay", 0)
    if not isinstance(delay, (int, float)) or delay < 0:
        raise ScriptError(f"{where}.delay is not a non-negative number")
    status = turn.get("status")
    if status is not None and (not isinstance(status, int) or not 100 <= status <= 599):
        raise ScriptError(f"{where}.status is not an HTTP status code")
    for key in ("text", "thinking", "error"):
        if turn.get(key) is not None and not isinstance(turn[key], str):
            raise ScriptError(f"{where}.{key} is not a string")
    first = turn.get("fail_first")
    if first is not None and not (
        isinstance(first, dict)
        and isinstance(first.get("times"), int)
        and isinstance(first.get("status"), int)
        and 400 <= first["status"] <= 599
    ):
        raise ScriptError(f"{where}.fail_first is not {{'times': n, 'status': 4xx/5xx}}")
    usage = turn.get("usage")
    if usage is not None and not (
        isinstance(usage, dict) and all(isinstance(v, int) for v in usage.values())
    ):
        raise ScriptError(f"{where}.usage is not an object of token counts")
    calls = turn.get("tool_calls", [])
    if not isinstance(calls, list):
        raise ScriptError(f"{where}.tool_calls is not a list")
    for k, call in enumerate(calls):
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            raise ScriptError(f"{where}.tool_calls[{k}] needs a string name")
    for api in (ANTHROPIC, OPENAI, GEMINI):
        override = turn.get(api)
        if override is not None:
            if not isinstance(override, dict) or any(k in override for k in _APIS):
                raise ScriptError(f"{where}.{api} is not a plain turn object")
            _check_turn(override, f"{where}.{api}")
    models = turn.get("models")
    if models is not None:
        if not isinstance(models, dict):
            raise ScriptError(f"{where}.models is not an object of model -> turn")
        for model, override in models.items():
            if not isinstance(override, dict) or "models" in override:
                raise ScriptError(f"{where}.models[{model!r}] is not a plain turn object")
            _check_turn(override, f"{where}.models[{model!r}]")


@dataclass(frozen=True)
class Plan:
    """How the script answers one request."""

    api: str
    scenario: int | None
    step: int | None
    prompt: str | None
    cwd: str | None
    turn: Mapping[str, Any]
    """The turn to play, ``{cwd}`` already replaced."""
    side: bool = False


def plan_request(script: Mapping[str, Any], api: str, body: Mapping[str, Any]) -> Plan:
    """Choose the scenario and turn for a request body of either API."""
    if api == ANTHROPIC:
        prompt, step, cwd = _anthropic_position(body)
    elif api == GEMINI:
        from agentyard.testing import model_gemini  # it builds on this module

        prompt, step, cwd = model_gemini.position(body)
    else:
        prompt, step, cwd = _openai_position(body)
    if not body.get("tools"):
        return Plan(api, None, None, prompt, cwd, {"text": SIDE_TEXT}, side=True)
    index = _choose_scenario(script, prompt or "")
    if index is None:
        return Plan(api, None, step, prompt, cwd, {"text": FINAL_TEXT})
    turns: list[dict[str, Any]] = script["scenarios"][index].get("turns", [])
    turn: Mapping[str, Any] = turns[step] if step < len(turns) else {"text": FINAL_TEXT}
    override = turn.get(api)
    if isinstance(override, dict):  # e.g. Claude's Write, codex's apply_patch in one script
        turn = {**turn, **override}
    by_model = turn.get("models")
    if isinstance(by_model, dict) and isinstance(by_model.get(body.get("model")), dict):
        turn = {**turn, **by_model[body["model"]]}  # e.g. one agent of a group made slow
    if cwd is not None:
        turn = _replace_cwd(turn, cwd)
    return Plan(api, index, step, prompt, cwd, turn)


def _choose_scenario(script: Mapping[str, Any], prompt: str) -> int | None:
    default: int | None = None
    for i, scenario in enumerate(script.get("scenarios", [])):
        match = scenario.get("match")
        if match is None:
            if default is None:
                default = i
        elif re.search(match, prompt):
            return i
    return default


def _replace_cwd(value: Any, cwd: str) -> Any:
    if isinstance(value, str):
        return value.replace("{cwd}", cwd)
    if isinstance(value, list):
        return [_replace_cwd(v, cwd) for v in value]
    if isinstance(value, dict):
        return {k: _replace_cwd(v, cwd) for k, v in value.items()}
    return value


def prompt_text(texts: list[str]) -> str:
    """The user's own words in a message: the CLIs' context blocks removed."""
    kept = []
    for text in texts:
        if text.lstrip().startswith(_AGENTS_MD_PREFIX):
            continue
        stripped = _WRAPPER_BLOCKS.sub("", text).strip()
        if stripped and not _INTERRUPTED.match(stripped):
            kept.append(stripped)
    return "\n".join(kept)


def detect_cwd(texts: list[str]) -> str | None:
    """The agent's working directory, as the CLIs state it (the latest statement wins).

    codex: ``<cwd>/abs/path</cwd>`` inside the ``<environment_context>`` user message.
    Claude Code: a `` - Primary working directory: /abs/path`` line in the ``# Environment``
    ``<system-reminder>`` of the first user message (older versions put ``Working directory:
    /abs/path`` in an ``<env>`` block of the system prompt).
    """
    for pattern in (_CODEX_CWD, _GEMINI_CWD, *_CLAUDE_CWD):
        for text in reversed(texts):
            found = pattern.findall(text)
            if found:
                return str(found[-1])
    return None


def count_turns(is_model: list[bool]) -> int:
    """How many model turns a history holds: runs of consecutive model-made items."""
    count, previous = 0, False
    for flag in is_model:
        if flag and not previous:
            count += 1
        previous = flag
    return count


def _anthropic_texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [
            str(block.get("text", ""))
            for block in content
            if isinstance(block, dict) and block.get("type") == "text"
        ]
    return []


def _anthropic_position(body: Mapping[str, Any]) -> tuple[str | None, int, str | None]:
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    prompt: str | None = None
    start = 0
    for i, message in enumerate(messages):
        if message.get("role") == "user":
            text = prompt_text(_anthropic_texts(message.get("content")))
            if text:
                prompt, start = text, i + 1
    step = count_turns([m.get("role") == "assistant" for m in messages[start:]])
    texts = _anthropic_texts(body.get("system"))
    for message in messages:
        if message.get("role") == "user":
            texts.extend(_anthropic_texts(message.get("content")))
    return prompt, step, detect_cwd(texts)


_OPENAI_MODEL_ITEMS = frozenset(
    {
        "function_call",
        "custom_tool_call",
        "reasoning",
        "local_shell_call",
        "web_search_call",
        "tool_search_call",
    }
)


def _openai_texts(item: Mapping[str, Any]) -> list[str]:
    content = item.get("content")
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        ]
    return []


def _openai_position(body: Mapping[str, Any]) -> tuple[str | None, int, str | None]:
    raw = body.get("input")
    if isinstance(raw, str):
        return raw, 0, detect_cwd([raw])
    items = [i for i in raw or [] if isinstance(i, dict)]
    prompt: str | None = None
    start = 0
    for i, item in enumerate(items):
        if item.get("type", "message") == "message" and item.get("role") == "user":
            text = prompt_text(_openai_texts(item))
            if text:
                prompt, start = text, i + 1

    def is_model(item: Mapping[str, Any]) -> bool:
        kind = item.get("type", "message")
        return kind in _OPENAI_MODEL_ITEMS or (
            kind == "message" and item.get("role") == "assistant"
        )

    step = count_turns([is_model(i) for i in items[start:]])
    texts: list[str] = []
    if isinstance(body.get("instructions"), str):
        texts.append(body["instructions"])
    for item in items:
        if item.get("role") in ("user", "developer", "system"):
            texts.extend(_openai_texts(item))
    return prompt, step, detect_cwd(texts)
