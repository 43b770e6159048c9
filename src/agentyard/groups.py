"""Multi-agent groups: track the runs of one prompt side by side and decide a winner."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentyard.connections import GitConnections
from agentyard.core.aggregate import group_status
from agentyard.core.diffs import split_by_file
from agentyard.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from agentyard.core.models import Run
from agentyard.service import Service


@dataclass
class GroupView:
    group_id: str
    record: dict[str, Any]
    runs: list[Run]

    @property
    def status(self) -> str:
        return group_status(r.status for r in self.runs)


class Groups:
    def __init__(self, service: Service, git: GitConnections) -> None:
        self.service = service
        self.store = service.store
        self.git = git

    async def get(self, user_id: str, group_id: str) -> GroupView:
        record = await self.store.get_group(group_id)
        if record is None:
            raise NotFound(f"Group {group_id} not found")
        if record["user_id"] != user_id:
            raise Forbidden("Group belongs to a different user")
        return GroupView(group_id, record, await self.store.runs_in_group(group_id))

    async def compare(self, user_id: str, group_id: str) -> dict[str, Any]:
        """Per run its changed files and diff; and the union of files, each with every run's
        part of the diff (null where a run left the file alone)."""
        view = await self.get(user_id, group_id)
        per_run: list[dict[str, Any]] = []
        by_file: dict[str, dict[str, Any]] = {}
        for run in view.runs:
            diff = await self.service.run_diff(run)
            parts = split_by_file(diff)
            stats = {f["path"]: f for f in (run.git or {}).get("files", [])}
            per_run.append(
                {
                    "runId": run.run_id,
                    "agent": run.agent,
                    "model": run.model,
                    "status": run.status.value,
                    "filesChanged": len(stats),
                    "linesAdded": sum(f["added"] for f in stats.values()),
                    "linesRemoved": sum(f["removed"] for f in stats.values()),
                    "files": list(stats.values()),
                    "diff": diff,
                }
            )
            for path in sorted(set(stats) | set(parts)):
                by_file.setdefault(path, {})[run.run_id] = {
                    "added": stats.get(path, {}).get("added", 0),
                    "removed": stats.get(path, {}).get("removed", 0),
                    "diff": parts.get(path, ""),
                }
        run_ids = [r.run_id for r in view.runs]
        files = [
            {"path": path, "runs": {rid: changes.get(rid) for rid in run_ids}}
            for path, changes in sorted(by_file.items())
        ]
        return {"taskId": group_id, "status": view.status, "runs": per_run, "files": files}

    async def select(
        self, user_id: str, group_id: str, run_id: str, pull_request: bool = False
    ) -> GroupView:
        """Record the winner (once), cancel the group's runs still active and, if asked,
        open a pull request from the winner's branch."""
        view = await self.get(user_id, group_id)
        winner = next((r for r in view.runs if r.run_id == run_id), None)
        if winner is None:
            raise InvalidInput(f"run {run_id} is not part of group {group_id}")
        chat = await self.service.chat_of(winner)
        if pull_request and not (winner.git or {}).get("pushed"):
            raise InvalidInput(f"run {run_id} pushed no branch to open a pull request from")
        token = await self.git.token(user_id) if pull_request else None
        if pull_request and token is None:
            raise InvalidInput("no GitHub token stored to open the pull request with")
        if view.record.get("selected_run_id") is not None or not await self.store.select_winner(
            group_id, run_id
        ):
            raise Conflict(f"group {group_id} already has a winner")
        await self.cancel_active(view, except_run=run_id)
        if token is not None:
            result = await self.git.open_pull_request(winner, chat, token)
            await self.store.update_group(
                group_id,
                pr_url=result.get("prUrl"),
                pr_number=result.get("prNumber"),
            )
        return await self.get(user_id, group_id)

    async def cancel(self, user_id: str, group_id: str) -> GroupView:
        view = await self.get(user_id, group_id)
        await self.cancel_active(view)
        return await self.get(user_id, group_id)

    async def cancel_active(self, view: GroupView, except_run: str | None = None) -> None:
        for run in view.runs:
            if run.run_id != except_run and not run.status.terminal:
                await self.service.cancel(run.user_id, run.run_id)
