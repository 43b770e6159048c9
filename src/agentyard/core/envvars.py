"""A task's environment variables (``environmentVariables``): parsing, rules, sealing.

Given as a JSON object of strings or as ``KEY=VALUE`` lines (blank lines and ``#`` comment
lines ignored; the value is the rest of the line after the first ``=``, taken literally).
Names that would override what the sandbox or a runtime sets for itself are refused, in
any letter case. Error messages name variables, never show a value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Protocol

from agentyard.core.errors import InvalidInput

FIELD = "environmentVariables"
MAX_VARIABLES = 100
MAX_VALUE_BYTES = 32 * 1024

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_RESERVED = frozenset({"PATH", "HOME", "USER", "LOGNAME", "SHELL", "PWD", "TMPDIR", "TERM", "LANG"})
_RESERVED_PREFIXES = (
    "LD_",
    "AGENTYARD_",
    "ANTHROPIC_",
    "OPENAI_",
    "CLAUDE_",
    "CODEX_",
    "GEMINI_",
    "GOOGLE_",
)
_RESERVED_SUFFIXES = ("_PROXY", "_BASE_URL")


def parse(raw: Any) -> dict[str, str] | None:
    """The variables of a request's ``environmentVariables`` (None when absent), or
    InvalidInput saying what is wrong."""
    if raw is None:
        return None
    if isinstance(raw, str):
        variables = _parse_lines(raw)
    elif isinstance(raw, dict):
        variables = {}
        for name, value in raw.items():
            if not isinstance(value, str):
                raise InvalidInput(f"'{FIELD}': the value of {_shown(name)} must be a string")
            variables[str(name)] = value
    else:
        raise InvalidInput(f"'{FIELD}' must be an object of strings or a string of KEY=VALUE lines")
    check(variables)
    return variables


def _parse_lines(raw: str) -> dict[str, str]:
    variables: dict[str, str] = {}
    for number, line in enumerate(raw.split("\n"), start=1):
        line = line.removesuffix("\r")
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if "=" not in line:
            raise InvalidInput(f"'{FIELD}': line {number} is not KEY=VALUE (it has no '=')")
        name, _, value = line.partition("=")
        variables[name.strip()] = value
    return variables


def check(variables: Mapping[str, str]) -> None:
    """The rules every set of variables keeps: names, reserved names, counts and sizes."""
    if len(variables) > MAX_VARIABLES:
        raise InvalidInput(
            f"'{FIELD}' may hold at most {MAX_VARIABLES} variables (got {len(variables)})"
        )
    for name, value in variables.items():
        if not _NAME.match(name):
            raise InvalidInput(
                f"'{FIELD}': {_shown(name)} is not a valid name "
                "(letters, digits and '_', not starting with a digit)"
            )
        if reserved(name):
            raise InvalidInput(
                f"'{FIELD}': {name} is reserved (the sandbox and the agent runtimes set it)"
            )
        if len(value.encode()) > MAX_VALUE_BYTES:
            raise InvalidInput(f"'{FIELD}': the value of {name} exceeds {MAX_VALUE_BYTES} bytes")


def reserved(name: str) -> bool:
    upper = name.upper()
    return (
        upper in _RESERVED
        or upper.startswith(_RESERVED_PREFIXES)
        or upper.endswith(_RESERVED_SUFFIXES)
    )


def _shown(name: object) -> str:
    text = str(name)
    return repr(text if len(text) <= 40 else text[:40] + "…")


class Box(Protocol):
    def seal(self, plaintext: str) -> str: ...

    def open(self, sealed: str) -> str | None: ...

    def derive(self, purpose: str) -> bytes: ...


def seal(box: Box, variables: Mapping[str, str]) -> str:
    return box.seal(json.dumps(dict(variables), separators=(",", ":")))


def unseal(box: Box, sealed: str) -> dict[str, str] | None:
    """The variables, or None when they were sealed with another key."""
    plain = box.open(sealed)
    if plain is None:
        return None
    data = json.loads(plain)
    assert isinstance(data, dict)
    return {str(k): str(v) for k, v in data.items()}
