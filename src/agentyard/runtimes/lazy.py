"""Agent SDKs imported on first use, not at start-up.

The Claude and Codex SDKs (with what they import) take tens of megabytes: a server that
never runs one of them never loads it, and one that does pays the import once, on its
first run of that agent.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for a module until one of its attributes is first read."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)
