"""Rendering for the dashboard: templates, safe markdown, diffs and friendly numbers.

Agent text is untrusted: markdown is rendered with raw HTML disabled (and markdown-it's
link validation, which refuses ``javascript:`` and the like); everything else is escaped by
Jinja's autoescaping.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markdown_it import MarkdownIt
from markupsafe import Markup, escape
from pygments.lexer import Lexer
from pygments.lexers import TextLexer, get_lexer_for_filename
from pygments.token import STANDARD_TYPES, _TokenType
from pygments.util import ClassNotFound

from agentyard.core import events as ev
from agentyard.core.clock import iso, utcnow
from agentyard.core.diffs import split_by_file
from agentyard.core.events import Event

# A newline is a line break: agents (and command output) mean it so.
_MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False, "breaks": True})
_MARKDOWN.enable("table")
MAX_DIFF_LINES = 3000
"""Lines of one file's diff shown; the rest is summarised (the API has it all)."""
MAX_TOOL_TEXT = 20_000


def markdown(text: str) -> Markup:
    # Raw HTML is disabled in the renderer: agent text comes out escaped.
    return Markup(_MARKDOWN.render(text))


def age(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return ""
    seconds = max(0, int(((now or utcnow()) - value).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def duration(start: datetime | None, end: datetime | None, now: datetime | None = None) -> str:
    if start is None:
        return ""
    seconds = max(0, int(((end or now or utcnow()) - start).total_seconds()))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def cost(value: float | None) -> str:
    return "" if value is None else f"${value:.4f}"


def tokens(usage: dict[str, Any] | None) -> str:
    if not usage:
        return ""
    total_in = int(usage.get("inputTokens") or 0) + int(usage.get("cacheReadInputTokens") or 0)
    total_out = int(usage.get("outputTokens") or 0)
    return f"{total_in:,} in / {total_out:,} out"


def pretty(value: Any) -> str:
    """A tool's input or output as readable text, cut at a bound."""
    if value is None:
        return ""
    if isinstance(value, dict) and set(value) <= {"output", "stdout", "text", "content"}:
        inner = next(iter(value.values()), "") if len(value) == 1 else None
        if isinstance(inner, str):
            value = inner
    text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)
    return text if len(text) <= MAX_TOOL_TEXT else text[:MAX_TOOL_TEXT] + "\n… (cut)"


def summary_of(value: Any, limit: int = 120) -> str:
    """One line for a tool call's row: its most telling input."""
    if isinstance(value, dict):
        for key in ("command", "cmd", "file_path", "path", "pattern", "url", "query"):
            if isinstance(value.get(key), str):
                value = value[key]
                break
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- a run's conversation ------------------------------------------------------------------------


def conversation(events: Iterable[Event]) -> list[dict[str, Any]]:
    """A run's events as what the live view showed: text blocks, reasoning blocks and tool
    calls in order (the assistant message keeps no reasoning; the events do)."""
    items: list[dict[str, Any]] = []
    blocks: dict[tuple[str, str], list[str]] = {}
    tools: dict[str, dict[str, Any]] = {}
    for event in events:
        kind = event.get("type")
        if kind in (ev.TEXT_START, ev.TEXT_DELTA, ev.REASONING_START, ev.REASONING_DELTA):
            family = "text" if kind in (ev.TEXT_START, ev.TEXT_DELTA) else "reasoning"
            key = (family, str(event.get("id")))
            if key not in blocks:
                blocks[key] = []
                items.append({"kind": family, "chunks": blocks[key]})
            if kind in (ev.TEXT_DELTA, ev.REASONING_DELTA):
                blocks[key].append(str(event.get("delta", "")))
        elif kind in (ev.TOOL_CALL_START, ev.TOOL_INPUT_AVAILABLE, ev.TOOL_OUTPUT_AVAILABLE):
            call_id = str(event.get("toolCallId"))
            tool = tools.get(call_id)
            if tool is None:
                tool = {"kind": "tool", "name": event.get("toolName"), "input": None}
                tool["output"] = None
                tools[call_id] = tool
                items.append(tool)
            if kind == ev.TOOL_INPUT_AVAILABLE:
                tool["input"] = event.get("input")
            elif kind == ev.TOOL_OUTPUT_AVAILABLE:
                tool["output"] = event.get("output")
    for item in items:
        if "chunks" in item:
            item["text"] = "".join(item.pop("chunks"))
    return [i for i in items if i["kind"] == "tool" or i["text"]]


# -- diffs --------------------------------------------------------------------------------------


@dataclass
class DiffLine:
    kind: str  # "add" | "del" | "ctx" | "hunk" | "meta"
    old: int | None
    new: int | None
    html: Markup


@dataclass
class DiffRow:
    """A side-by-side row: the old line (left) and the new line (right), either may be None."""

    left: DiffLine | None
    right: DiffLine | None
    hunk: DiffLine | None = None


@dataclass
class DiffFile:
    path: str
    added: int = 0
    removed: int = 0
    lines: list[DiffLine] = field(default_factory=list)
    cut: int = 0

    @property
    def rows(self) -> list[DiffRow]:
        rows: list[DiffRow] = []
        dels: list[DiffLine] = []
        adds: list[DiffLine] = []

        def flush() -> None:
            for i in range(max(len(dels), len(adds))):
                rows.append(
                    DiffRow(dels[i] if i < len(dels) else None, adds[i] if i < len(adds) else None)
                )
            dels.clear()
            adds.clear()

        for line in self.lines:
            if line.kind == "del":
                if adds:
                    flush()
                dels.append(line)
            elif line.kind == "add":
                adds.append(line)
            else:
                flush()
                if line.kind == "hunk":
                    rows.append(DiffRow(None, None, hunk=line))
                elif line.kind == "ctx":
                    rows.append(DiffRow(line, line))
        flush()
        return rows


@lru_cache(maxsize=256)
def _lexer(path: str) -> Lexer:
    try:
        found: Lexer = get_lexer_for_filename(path, stripnl=False, ensurenl=False)
        return found
    except ClassNotFound:
        plain: Lexer = TextLexer(stripnl=False, ensurenl=False)
        return plain


def _css_class(kind: _TokenType) -> str:
    current: _TokenType | None = kind
    while current is not None and current not in STANDARD_TYPES:
        current = current.parent
    return "" if current is None else STANDARD_TYPES[current]


def highlight(path: str, text: str) -> Markup:
    """One line of code, syntax-coloured with Pygments' CSS classes (no inline styles)."""
    out = []
    for kind, value in _lexer(path).get_tokens(text):
        css = _css_class(kind)
        piece = escape(value)
        out.append(Markup(f'<span class="{css}">{piece}</span>') if css else piece)
    return Markup("").join(out)


def highlight_file(path: str, text: str) -> Markup:
    """A whole file, syntax-coloured line by line (lines stay lines, whatever the lexer)."""
    return Markup("\n").join(highlight(path, line) for line in text.split("\n"))


def parse_diff(diff: str) -> list[DiffFile]:
    files = []
    for path, part in split_by_file(diff).items():
        file = DiffFile(path)
        old = new = 0
        in_hunk = False
        for raw in part.splitlines():
            if raw.startswith("@@"):
                in_hunk = True
                old, new = _hunk_start(raw)
                line = DiffLine("hunk", None, None, escape(raw))
            elif not in_hunk:
                continue  # the header: diff --git, index, ---/+++
            elif raw.startswith("+"):
                file.added += 1
                line = DiffLine("add", None, new, highlight(path, raw[1:]))
                new += 1
            elif raw.startswith("-"):
                file.removed += 1
                line = DiffLine("del", old, None, highlight(path, raw[1:]))
                old += 1
            elif raw.startswith("\\"):
                line = DiffLine("meta", None, None, escape(raw))
            else:
                line = DiffLine("ctx", old, new, highlight(path, raw[1:]))
                old += 1
                new += 1
            if len(file.lines) < MAX_DIFF_LINES:
                file.lines.append(line)
            else:
                file.cut += 1
        files.append(file)
    return files


def _hunk_start(header: str) -> tuple[int, int]:
    try:
        ranges = header.split("@@")[1].split()
        return int(ranges[0][1:].split(",")[0]), int(ranges[1][1:].split(",")[0])
    except (IndexError, ValueError):
        return 0, 0


# -- templates ----------------------------------------------------------------------------------


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("agentyard.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        markdown=markdown,
        age=age,
        cost=cost,
        tokens=tokens,
        pretty=pretty,
        summary_of=summary_of,
        iso=iso,
    )
    env.globals.update(duration=duration)
    return env
