"""The ``agentyard`` commands that drive a server through the Python client: run, tasks,
show, logs, continue, cancel, diff, files.

Every command takes ``--json`` (one JSON document; followers print one JSON event per line)
and prints plain text when stdout is not a terminal. Exit status: 0 when the run completed
(or the command succeeded), 1 when the run failed, was cancelled or interrupted, 2 when the
command could not be carried out (an API error, the server unreachable).

Ctrl-C while following a run: on a terminal the CLI asks whether to cancel the run or just
detach from it (the run goes on); without a terminal on stdin it cancels, since nobody can
answer and an unattended run nobody watches is the surprise to avoid.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from agentyard.client import ApiError, Client, ConnectionFailed, InvalidInput
from agentyard.client.base import TERMINAL
from agentyard.client.render import STATUS_STYLE, RunView, usage_line

OK, RUN_FAILED, ERROR = 0, 1, 2

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


class Options:
    """The app-wide ``--url`` and ``--key``, set by the app's callback."""

    url: str | None = None
    key: str | None = None


def client() -> Client:
    return Client(Options.url, Options.key)


def emit(data: Any) -> None:
    """One JSON document (or event) on its own line."""
    out.file.write(json.dumps(data, ensure_ascii=False) + "\n")
    out.file.flush()


def fail(message: str) -> NoReturn:
    err.print(f"error: {message}", style="red", markup=False)
    raise typer.Exit(ERROR)


@contextmanager
def api() -> Iterator[Client]:
    """A client; an API or connection error ends the command with its message, exit 2."""
    with client() as yard:
        try:
            yield yard
        except (ApiError, ConnectionFailed) as exc:
            fail(str(exc))


def table(columns: list[str], rows: list[list[str]], styles: dict[int, str] | None = None) -> None:
    """A table: Rich's on a terminal; plain aligned columns, never truncated, elsewhere."""
    if out.is_terminal:
        rich_table = Table(*columns, box=None)
        for row in rows:
            cells = [
                Text(cell, style=STATUS_STYLE.get(cell, "") if i in (styles or {}) else "")
                for i, cell in enumerate(row)
            ]
            rich_table.add_row(*cells)
        out.print(rich_table)
        return
    widths = [max(len(str(r[i])) for r in [columns, *rows]) for i in range(len(columns))]
    for row in [columns, *rows]:
        line = "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True))
        out.file.write(line.rstrip() + "\n")


def exit_for(status: str) -> int:
    return OK if status == "completed" else RUN_FAILED


JSON = typer.Option(False, "--json", help="Machine-readable output.")


def follow(yard: Client, run_id: str, as_json: bool, after: int = 0) -> int:
    """Print a run's events as they come until it ends; the exit status of its end.

    Ctrl-C: cancel or detach (see the module's docstring)."""
    view = RunView(out, run_id)
    try:
        with view:
            for event in yard.stream(run_id, after=after):
                if as_json:
                    emit(event.line())
                else:
                    view.event(event)
    except KeyboardInterrupt:
        return interrupted(yard, run_id, as_json)
    task = yard.get_task(run_id)
    if not as_json:
        view.summary(task)
    return exit_for(task.status)


def interrupted(yard: Client, run_id: str, as_json: bool) -> int:
    choice = "cancel"
    if sys.stdin.isatty():
        answer = typer.prompt(
            "\nCancel the run, or detach and let it go on? [c/d]", default="c", err=True
        )
        choice = "detach" if answer.strip().lower().startswith("d") else "cancel"
    if choice == "detach":
        err.print(f"detached: agentyard logs {run_id} --follow", markup=False)
        return OK
    # A fresh client: Ctrl-C may have struck inside the stream's connection pool and left it
    # unusable (a lock held), and the cancel must still go out.
    with Client(yard.url, yard.key) as fresh:
        result = fresh.cancel(run_id)
        final = fresh.wait(run_id, timeout=30)
    if as_json:
        emit({"type": "cancelled", "runId": run_id, "success": result.success})
    else:
        err.print(f"cancel: {result.message or result.status}", markup=False)
    return exit_for(final.status)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    for command in (run, tasks, show, logs, continue_, cancel, diff, files):
        name = command.__name__.rstrip("_")
        app.command(name)(command)


def run(
    prompt: str = typer.Argument(..., help="What the agent should do."),
    agent: str | None = typer.Option(None, help="claude, codex or command."),
    model: str | None = typer.Option(None, help="The agent's model."),
    repo: str | None = typer.Option(None, help="Repository URL (https) to work on."),
    branch: str | None = typer.Option(None, help="Base branch (default: the repository's)."),
    pr: bool = typer.Option(False, "--pr", help="Open a pull request when done."),
    agents: str | None = typer.Option(
        None, help="Several agents at once, comma-separated: claude,codex:gpt-5.5"
    ),
    title: str | None = typer.Option(None, help="A title for the task."),
    env: list[str] = typer.Option([], "--env", "-e", help="KEY=VALUE for the agent (repeat)."),
    detach: bool = typer.Option(False, "--detach", "-d", help="Do not follow the run."),
    as_json: bool = JSON,
) -> None:
    """Create a task and follow it live (exit 0 when it completed, 1 otherwise)."""
    choices = [a.strip() for a in agents.split(",") if a.strip()] if agents else None
    with api() as yard:
        created = yard.create_task(
            prompt,
            agent=agent,
            model=model,
            title=title,
            repo_url=repo,
            branch=branch,
            pull_request=pr or None,
            env="\n".join(env) if env else None,
            agents=choices,
        )
        if detach or created.runs:
            if as_json:
                emit(created.wire())
            else:
                out.print(created.run_id, markup=False)
                for ref in created.runs or []:
                    out.print(f"  {ref.run_id}  {ref.agent}  {ref.model or ''}", markup=False)
        if detach:
            return
        if created.runs:
            raise typer.Exit(wait_group(yard, created.task_id, as_json))
        if not as_json:
            err.print(f"run {created.run_id}", style="dim", markup=False)
        raise typer.Exit(follow(yard, created.run_id, as_json))


def wait_group(yard: Client, group_id: str, as_json: bool) -> int:
    """A multi-agent task: wait for every run, then show them side by side."""
    from agentyard.cli_admin import compare_rows

    try:
        with out.status("agents at work…") if out.is_terminal else _nothing():
            for ref in yard.group(group_id).runs:
                yard.wait(ref.run_id)
    except KeyboardInterrupt:
        if not sys.stdin.isatty() or typer.confirm("\nCancel every run?", default=True, err=True):
            yard.cancel_group(group_id)
        return RUN_FAILED
    group = yard.group(group_id)
    if as_json:
        emit(group.wire())
    else:
        table(*compare_rows(group, yard.compare(group_id)), styles={3: "status"})
        out.print(f"choose one: agentyard select {group_id} RUN", markup=False)
    return exit_for(group.status)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def tasks(
    status: str | None = typer.Option(None, help="Only runs with this status."),
    limit: int = typer.Option(20, help="How many."),
    page: int = typer.Option(1, help="Which page."),
    as_json: bool = JSON,
) -> None:
    """Your runs, newest first."""
    with api() as yard:
        listing = yard.list_tasks(page, limit, status)
    if as_json:
        emit(listing.wire())
        return
    rows = [
        [
            t.run_id,
            t.status,
            t.agent,
            t.model or "",
            t.created_at.strftime("%Y-%m-%d %H:%M:%S") if t.created_at else "",
        ]
        for t in listing.tasks
    ]
    table(["run", "status", "agent", "model", "created"], rows, styles={1: "status"})
    if listing.has_more:
        out.print(f"more: --page {page + 1}", style="dim")


def show(run_id: str, as_json: bool = JSON) -> None:
    """A run: status, prompt, error, cost, changes, and the agent's last answer."""
    with api() as yard:
        task = yard.get_task(run_id)
    if as_json:
        emit(task.wire())
        raise typer.Exit(OK)
    rows = [
        ("run", task.run_id),
        ("status", task.status),
        ("agent", f"{task.agent} {task.model or ''}".strip()),
        ("title", task.title or ""),
        ("prompt", task.prompt or ""),
        ("cost", usage_line(task)),
        ("error", task.error or ""),
        ("branch", task.github.created_branch if task.github else ""),
        ("pull request", task.github.pr_url if task.github else ""),
    ]
    if task.diff_stats:
        s = task.diff_stats
        rows.append(("changes", f"{s.files_changed} files, +{s.lines_added} -{s.lines_removed}"))
    for name, value in rows:
        if value:
            out.print(f"{name:>13}: {value}", markup=False)
    answer = [m for m in task.messages if m.role == "assistant"][-1:]
    for message in answer:
        text = "".join(p.get("text", "") for p in message.parts if p.get("type") == "text")
        if text:
            out.print()
            out.print(text, markup=False)


def logs(
    run_id: str,
    follow_: bool = typer.Option(False, "--follow", "-f", help="Follow until the run ends."),
    as_json: bool = JSON,
) -> None:
    """A run's events; with --follow, live until it ends (resuming after a dropped
    connection without losing or repeating an event)."""
    with api() as yard:
        if follow_:
            raise typer.Exit(follow(yard, run_id, as_json))
        stored = yard.logs(run_id)
        events = stored.typed_events()
        if as_json:
            for event in events:
                emit(event.line())
            return
        view = RunView(Console(file=out.file, force_terminal=False, highlight=False), run_id)
        for event in events:
            view.event(event)
        view.flush()
        if stored.status in TERMINAL:
            view.summary(yard.get_task(run_id))


def continue_(
    run_id: str,
    prompt: str = typer.Argument(..., help="The follow-up."),
    agent: str | None = typer.Option(None, help="Switch agent."),
    model: str | None = typer.Option(None, help="Switch model."),
    follow_: bool = typer.Option(False, "--follow", "-f", help="Follow the new run."),
    as_json: bool = JSON,
) -> None:
    """A follow-up on the same chat, workspace and branch."""
    with api() as yard:
        created = yard.continue_task(run_id, prompt, agent=agent, model=model)
        if not follow_:
            if as_json:
                emit(created.wire())
            else:
                out.print(created.run_id, markup=False)
            return
        raise typer.Exit(follow(yard, created.run_id, as_json))


def cancel(run_id: str, as_json: bool = JSON) -> None:
    """Cancel a run (exit 1 if it had already ended)."""
    with api() as yard:
        result = yard.cancel(run_id)
    if as_json:
        emit(result.wire())
    else:
        out.print(f"{result.status}: {result.message or ''}".rstrip(": "), markup=False)
    raise typer.Exit(OK if result.success else RUN_FAILED)


def diff(run_id: str, as_json: bool = JSON) -> None:
    """A run's changes as a unified diff (coloured on a terminal)."""
    with api() as yard:
        result = yard.diff(run_id)
    if as_json:
        emit(result.wire())
    elif out.is_terminal:
        out.print(Syntax(result.diff, "diff", theme="ansi_dark", background_color="default"))
    else:
        out.file.write(result.diff)


def files(
    run_id: str,
    path: str = typer.Argument("", help="A directory to list, or a file to print."),
    recursive: bool = typer.Option(False, "--recursive", "-r"),
    as_json: bool = JSON,
) -> None:
    """The run's workspace: a directory's entries, or a file's content."""
    with api() as yard:
        try:
            listing = yard.list_files(run_id, path, recursive)
        except InvalidInput as exc:
            if "not a directory" not in exc.message:
                raise
            content = yard.read_file(run_id, path)
            if as_json:
                emit(content.wire())
            elif content.encoding == "text":
                out.file.write(content.content)
            else:
                fail(f"{path} is binary ({content.size} bytes): use --json for its base64")
            return
    if as_json:
        emit(listing.wire())
        return
    for entry in listing.files:
        suffix = "/" if entry.type == "directory" else ""
        size = "" if entry.size is None else f"{entry.size:>10}  "
        out.print(f"{size or ' ' * 12}{entry.path}{suffix}", markup=False)
