"""Rows of the store's tables as domain records (a row's mapping of column names)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentyard.core.models import Chat, Run
from agentyard.core.status import RunStatus


def run_of(row: Mapping[Any, Any]) -> Run:
    values = dict(row)
    values["status"] = RunStatus(values["status"])
    values["options"] = values.get("options") or {}
    return Run(**values)


def chat_of(row: Mapping[Any, Any]) -> Chat:
    return Chat(**row)
