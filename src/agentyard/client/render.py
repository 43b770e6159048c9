"""What the CLI prints of a run's events: live on a terminal, plain text otherwise.

On a terminal the agent's text streams in, reasoning dimmed, each tool call is one line with
its input summarised and its output collapsed to one line, and a status line (elapsed time,
events, status; cost and tokens once known) stays at the bottom. Anywhere else the same
content is written as plain text as it comes (no colours, no status line), so it can be
piped, logged or read by a test.
"""

from __future__ import annotations

import json
import time
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from agentyard.client.models import Event, Task

STATUS_STYLE = {
    "completed": "bold green",
    "failed": "bold red",
    "cancelled": "yellow",
    "interrupted": "yellow",
    "running": "cyan",
    "queued": "dim",
}


OUTPUT_KEYS = ("stdout", "output", "content", "text", "result", "stderr")


def clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def summarise_input(value: Any, width: int = 100) -> str:
    """A tool's input on one line: a lone string as is, else ``key=value`` pairs."""
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(next(iter(value.values())), str):
            return clip(next(iter(value.values())), width)
        pairs = (f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in value.items())
        return clip(", ".join(pairs), width)
    return clip(value if isinstance(value, str) else json.dumps(value), width)


def collapse_output(value: Any, width: int = 100) -> str:
    """A tool's output collapsed to its first line, and how many lines it had."""
    if isinstance(value, dict):
        # Runtimes wrap a tool's result differently: show its text, not the wrapper.
        texts = [value[k] for k in OUTPUT_KEYS if isinstance(value.get(k), str)]
        if texts:
            value = texts[0]
        elif len(value) == 1:
            value = next(iter(value.values()))
    text = value if isinstance(value, str) else json.dumps(value)
    lines = [line for line in text.splitlines() if line.strip()] or [""]
    more = f"  (+{len(lines) - 1} lines)" if len(lines) > 1 else ""
    return clip(lines[0], width) + more


def usage_line(task: Task) -> str:
    """``$0.0123 · 1,234 in / 56 out tokens`` (what is known of it)."""
    parts = []
    if task.cost_usd is not None:
        parts.append(f"${task.cost_usd:.4f}")
    usage = task.usage or {}
    if "inputTokens" in usage or "outputTokens" in usage:
        tokens_in, tokens_out = usage.get("inputTokens", 0), usage.get("outputTokens", 0)
        parts.append(f"{tokens_in:,} in / {tokens_out:,} out tokens")
    return " · ".join(parts)


class RunView:
    """Renders one run's events; use as a context manager around ``event()`` calls."""

    def __init__(self, console: Console, run_id: str, status: str = "queued") -> None:
        self.console = console
        self.run_id = run_id
        self.status = status
        self.events = 0
        self.started = time.monotonic()
        self.partial = ""
        self.block: str | None = None  # "text" or "reasoning" while a block is open
        self.at_line_start = True
        self.live: Live | None = None
        self.extra = ""

    # -- the live area (terminals only) ----------------------------------------------------

    def __enter__(self) -> RunView:
        if self.console.is_terminal:
            self.live = Live(self, console=self.console, refresh_per_second=8, transient=True)
            self.live.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.flush()
        if self.live is not None:
            self.live.stop()
            self.live = None

    def __rich__(self) -> RenderableType:
        elapsed = time.monotonic() - self.started
        line = Text.assemble(
            ("● ", STATUS_STYLE.get(self.status, "")),
            (self.status, STATUS_STYLE.get(self.status, "")),
            f" · {elapsed:.1f}s · {self.events} events",
            f" · {self.extra}" if self.extra else "",
            (f"  {self.run_id}", "dim"),
        )
        if self.partial:
            return Group(Text(self.partial, style=self._style()), line)
        return line

    def _style(self) -> str:
        return "dim italic" if self.block == "reasoning" else ""

    # -- output ---------------------------------------------------------------------------

    def _line(self, text: str, style: str = "") -> None:
        """A whole line, after whatever text is in progress."""
        self.flush()
        if not self.at_line_start:
            self.console.file.write("\n")
            self.at_line_start = True
        self.console.print(Text(text, style=style), soft_wrap=True)

    def _stream(self, delta: str) -> None:
        if self.live is None:
            # Plain: write as it comes, so a pipe sees the text as soon as the agent says it.
            self.console.file.write(delta)
            self.console.file.flush()
            self.at_line_start = delta.endswith("\n") or (self.at_line_start and not delta)
            return
        self.partial += delta
        while "\n" in self.partial:
            done, self.partial = self.partial.split("\n", 1)
            self.console.print(Text(done, style=self._style()), soft_wrap=True)

    def flush(self) -> None:
        """End the text in progress with its line."""
        if self.live is not None and self.partial:
            # Cleared first: printing redraws the live area, which must not show it again.
            done, self.partial = self.partial, ""
            self.console.print(Text(done, style=self._style()), soft_wrap=True)
        elif self.live is None and not self.at_line_start:
            self.console.file.write("\n")
            self.console.file.flush()
            self.at_line_start = True

    def event(self, event: Event) -> None:
        self.events += 1
        data = event.data
        kind = event.type
        if kind == "start":
            self.status = "running"
        elif kind in ("text-start", "reasoning-start"):
            self.flush()
            self.block = kind.split("-")[0]
        elif kind in ("text-delta", "reasoning-delta"):
            self.block = self.block or kind.split("-")[0]
            self._stream(str(data.get("delta", "")))
        elif kind in ("text-end", "reasoning-end"):
            self.flush()
            self.block = None
        elif kind == "tool-input-available":
            name = data.get("toolName", "tool")
            self._line(f"⏺ {name}({summarise_input(data.get('input'))})", "bold")
        elif kind == "tool-output-available":
            self._line(f"  ⎿ {collapse_output(data.get('output'))}", "dim")
        elif kind == "files":
            paths = [str(f.get("path")) for f in data.get("files", []) if isinstance(f, dict)]
            if paths:
                self._line(f"  files: {', '.join(paths)}", "dim")
        elif kind == "error":
            self._line(f"error: {data.get('errorText', '')}", "bold red")
        elif kind == "finish":
            self.flush()
            self.status = str(data.get("status", self.status))

    def summary(self, task: Task) -> None:
        """The end of a run: status, time, cost and tokens; diff stats, branch, PR."""
        self.flush()
        self.status = task.status
        self.extra = usage_line(task)
        elapsed = ""
        if task.started_at and task.completed_at:
            elapsed = f" in {(task.completed_at - task.started_at).total_seconds():.1f}s"
        head = f"{task.status}{elapsed}" + (f" · {self.extra}" if self.extra else "")
        self._line(head, STATUS_STYLE.get(task.status, ""))
        if task.error and task.status != "completed":
            self._line(f"error: {task.error}", "red")
        stats = task.diff_stats
        if stats is not None and stats.files_changed:
            self._line(
                f"{stats.files_changed} file{'' if stats.files_changed == 1 else 's'} changed, "
                f"+{stats.lines_added} -{stats.lines_removed}"
            )
        if task.github is not None:
            if task.github.created_branch:
                self._line(f"branch: {task.github.created_branch}")
            if task.github.pr_url:
                self._line(f"pull request: {task.github.pr_url}")
