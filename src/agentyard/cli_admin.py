"""The ``agentyard`` commands for multi-agent groups, agents, GitHub and API keys: compare,
select, agents, git connect/status/disconnect, keys list/revoke."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import typer

from agentyard.cli_tasks import JSON, OK, RUN_FAILED, api, emit, err, fail, out, table
from agentyard.client.models import Comparison, Group

git_app = typer.Typer(no_args_is_help=True, help="The GitHub connection.")


def register(app: typer.Typer, keys_app: typer.Typer) -> None:
    app.command("compare")(compare)
    app.command("select")(select)
    app.command("agents")(agents)
    app.add_typer(git_app, name="git")
    keys_app.command("list")(keys_list)
    keys_app.command("revoke")(keys_revoke)


def compare_rows(group: Group, comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """The group's runs side by side: status, cost, files, lines (the winner starred)."""
    costs = {r.run_id: r.cost_usd for r in group.runs}
    rows = []
    for r in comparison.runs:
        cost = costs.get(r.run_id)
        rows.append(
            [
                r.run_id + (" *" if r.run_id == group.selected_run_id else ""),
                r.agent,
                r.model or "",
                r.status,
                "" if cost is None else f"${cost:.4f}",
                str(r.files_changed),
                f"+{r.lines_added}",
                f"-{r.lines_removed}",
            ]
        )
    return ["run", "agent", "model", "status", "cost", "files", "+", "-"], rows


def compare(group_id: str, as_json: bool = JSON) -> None:
    """A multi-agent task's runs side by side, and the files each changed."""
    with api() as yard:
        group = yard.group(group_id)
        comparison = yard.compare(group_id)
    if as_json:
        emit(comparison.wire())
        return
    out.print(f"{group_id}: {group.status}", markup=False)
    table(*compare_rows(group, comparison), styles={3: "status"})
    for f in comparison.files:
        changed = [rid for rid, part in f.runs.items() if part is not None]
        out.print(f"  {f.path}: {', '.join(changed)}", markup=False)


def select(
    group_id: str,
    run_id: str,
    pr: bool = typer.Option(False, "--pr", help="Open a pull request from its branch."),
    as_json: bool = JSON,
) -> None:
    """Choose a group's winner (runs still active are cancelled)."""
    with api() as yard:
        group = yard.select(group_id, run_id, pr or None)
    if as_json:
        emit(group.wire())
        return
    out.print(f"selected {group.selected_run_id} ({group.status})", markup=False)
    if group.pr_url:
        out.print(f"pull request: {group.pr_url}", markup=False)


def agents(as_json: bool = JSON) -> None:
    """The server's agent runtimes and whether each is configured."""
    with api() as yard:
        result = yard.agents()
    if as_json:
        emit(result.wire())
        return
    rows = [
        [a.agent, "yes" if a.configured else "no", a.default_model or "", a.detail or ""]
        for a in result.agents
    ]
    table(["agent", "configured", "default model", "detail"], rows)
    out.print(f"sandbox: {result.sandbox.get('sandbox', '?')}", markup=False)


@git_app.command("connect")
def git_connect(as_json: bool = JSON) -> None:
    """Store a GitHub token (asked for, never echoed; or piped on stdin)."""
    if sys.stdin.isatty():
        token = typer.prompt("GitHub token", hide_input=True, err=True)
    else:
        token = sys.stdin.readline().strip()
    if not token:
        fail("no token given")
    with api() as yard:
        result = yard.git_connect(token)
    if as_json:
        emit(result.wire())
    else:
        out.print(f"connected as {result.login}", markup=False)


@git_app.command("status")
def git_status(as_json: bool = JSON) -> None:
    """The connected account, checked with GitHub now."""
    with api() as yard:
        account = yard.git_status()
    if as_json:
        emit(account.wire())
        return
    if not account.connected:
        out.print("not connected: agentyard git connect", markup=False)
        raise typer.Exit(RUN_FAILED)
    valid = "valid" if account.token_valid else f"invalid ({account.message})"
    out.print(f"connected as {account.login}, token {valid}", markup=False)


@git_app.command("disconnect")
def git_disconnect(as_json: bool = JSON) -> None:
    """Forget the stored token."""
    with api() as yard:
        result = yard.git_disconnect()
    if as_json:
        emit(result.wire())
    else:
        out.print(result.message or "disconnected", markup=False)


# -- API keys: local administration, on the database itself ------------------------------


async def _keys(action: str, name: str | None = None) -> list[dict[str, Any]]:
    import sqlalchemy as sa

    from agentyard.core.clock import iso, utcnow
    from agentyard.datadir import ensure_private_dir
    from agentyard.settings import Settings
    from agentyard.store import tables as t
    from agentyard.store.db import create_engine
    from agentyard.store.db import migrate as run_migrate
    from agentyard.store.keycache import mark_revoked

    settings = Settings()
    ensure_private_dir(settings.resolved_data_dir)
    await asyncio.to_thread(run_migrate, settings.db_url)
    engine = create_engine(settings.db_url)
    keys = t.api_keys
    try:
        async with engine.begin() as conn:
            if action == "revoke":
                # Every live key of that name: a name is how a person knows their keys.
                result = await conn.execute(
                    keys.update()
                    .where(keys.c.name == name, keys.c.revoked_at.is_(None))
                    .values(revoked_at=utcnow())
                    .returning(keys.c.key_id)
                )
                revoked = [{"keyId": row.key_id} for row in result]
            else:
                rows = await conn.execute(sa.select(keys).order_by(keys.c.created_at))
                return [
                    {
                        "keyId": r.key_id,
                        "name": r.name,
                        "user": r.user_id,
                        "createdAt": iso(r.created_at),
                        "revokedAt": iso(r.revoked_at),
                    }
                    for r in rows
                ]
        if revoked:
            # Committed: a server on this data directory forgets the keys it had verified.
            mark_revoked(settings.resolved_data_dir)
        return revoked
    finally:
        await engine.dispose()


def keys_list(as_json: bool = JSON) -> None:
    """The API keys (never their secrets: only hashes are stored)."""
    rows = asyncio.run(_keys("list"))
    if as_json:
        emit({"keys": rows})
        return
    cells = [[r["name"], r["user"], r["createdAt"] or "", r["revokedAt"] or ""] for r in rows]
    table(["name", "user", "created", "revoked"], cells)


def keys_revoke(name: str, as_json: bool = JSON) -> None:
    """Revoke the key(s) of that name: requests with it get 401 from now on."""
    revoked = asyncio.run(_keys("revoke", name))
    if as_json:
        emit({"revoked": revoked})
    elif revoked:
        out.print(f"revoked {len(revoked)} key(s) named {name}", markup=False)
    if not revoked:
        err.print(f"no active key named {name}", markup=False)
        raise typer.Exit(RUN_FAILED)
    raise typer.Exit(OK)
