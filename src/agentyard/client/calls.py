"""Every endpoint as a ``Call``: the request and the model of its answer. The sync and the
async client only send calls, so both speak the API identically."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel

from agentyard.client import bodies
from agentyard.client import models as m
from agentyard.client.base import API, file_path, params, seg
from agentyard.client.errors import check

M = TypeVar("M", bound=BaseModel)

EnvVars = Mapping[str, str] | str


@dataclass(frozen=True)
class Call(Generic[M]):
    method: str
    path: str
    model: type[M]
    params: dict[str, Any] | None = None
    json: dict[str, Any] | None = None
    files: list[tuple[str, tuple[str, bytes]]] | None = None
    data: dict[str, str] | None = None

    def request(self) -> dict[str, Any]:
        """The keyword arguments of ``httpx.Client.request`` for this call."""
        out: dict[str, Any] = {"params": self.params}
        if self.json is not None:
            out["json"] = self.json
        if self.files is not None:
            out["files"] = self.files
            out["data"] = self.data
        return out

    def parse(self, response: httpx.Response) -> M:
        return self.model.model_validate(check(response).json())


def choice(spec: str | bodies.AgentChoice) -> bodies.AgentChoice:
    """``"codex"`` or ``"codex:gpt-5.5"`` (agent, then model after the first colon)."""
    if isinstance(spec, bodies.AgentChoice):
        return spec
    agent, _, model = spec.partition(":")
    return bodies.AgentChoice(agent=agent.strip() or None, model=model.strip() or None)


def _env(env: EnvVars | None) -> dict[str, str] | str | None:
    return dict(env) if isinstance(env, Mapping) else env


def create_task(
    prompt: str,
    *,
    agent: str | None = None,
    model: str | None = None,
    title: str | None = None,
    repo_url: str | None = None,
    branch: str | None = None,
    pull_request: bool | None = None,
    env: EnvVars | None = None,
    agents: Sequence[str | bodies.AgentChoice] | None = None,
) -> Call[m.CreatedTask]:
    body = bodies.CreateTask(
        prompt=prompt,
        agent=agent,
        model=model,
        title=title,
        repo_url=repo_url,
        selected_branch=branch,
        create_pull_request=pull_request,
        environment_variables=_env(env),
        selected_agents=[choice(a) for a in agents] if agents else None,
    )
    return Call("POST", f"{API}/tasks", m.CreatedTask, json=body.wire())


def list_tasks(page: int = 1, limit: int = 20, status: str | None = None) -> Call[m.TaskList]:
    query = params(page=page, limit=limit, status=status)
    return Call("GET", f"{API}/tasks", m.TaskList, params=query)


def get_task(run_id: str) -> Call[m.Task]:
    return Call("GET", f"{API}/tasks/{seg(run_id)}", m.Task)


def status(run_id: str) -> Call[m.RunStatus]:
    return Call("GET", f"{API}/tasks/{seg(run_id)}/status", m.RunStatus)


def continue_task(
    run_id: str,
    prompt: str,
    *,
    agent: str | None = None,
    model: str | None = None,
    env: EnvVars | None = None,
) -> Call[m.ContinuedTask]:
    body = bodies.ContinueTask(
        prompt=prompt, agent=agent, model=model, environment_variables=_env(env)
    )
    path = f"{API}/tasks/{seg(run_id)}/continue"
    return Call("POST", path, m.ContinuedTask, json=body.wire())


def update_task(run_id: str, body: bodies.UpdateTask) -> Call[m.UpdateResult]:
    return Call("PATCH", f"{API}/tasks/{seg(run_id)}", m.UpdateResult, json=body.wire())


def diff(run_id: str) -> Call[m.Diff]:
    return Call("GET", f"{API}/tasks/{seg(run_id)}/diff", m.Diff)


def logs(run_id: str, include_deltas: bool = True) -> Call[m.Logs]:
    query = params(includeDeltas=include_deltas)
    return Call("GET", f"{API}/tasks/{seg(run_id)}/logs", m.Logs, params=query)


def stream_path(run_id: str, raw: bool = False) -> tuple[str, dict[str, Any]]:
    """The SSE endpoint of a run: ``/tasks/{id}/logs/stream``, or ``/agent/stream``."""
    if raw:
        return f"{API}/agent/stream", {"runId": run_id}
    return f"{API}/tasks/{seg(run_id)}/logs/stream", {}


def raw_status(run_id: str) -> Call[m.RawStatus]:
    return Call("GET", f"{API}/agent/status", m.RawStatus, params={"runId": run_id})


def list_files(run_id: str, path: str = "", recursive: bool = False) -> Call[m.FileList]:
    query = params(path=path or None, recursive=recursive)
    return Call("GET", f"{API}/tasks/{seg(run_id)}/files", m.FileList, params=query)


def read_file(run_id: str, path: str) -> Call[m.FileContent]:
    return Call("GET", f"{API}/tasks/{seg(run_id)}/files/{file_path(path)}", m.FileContent)


def write_file(run_id: str, path: str, content: str | bytes) -> Call[m.FileChange]:
    if isinstance(content, bytes):
        body = bodies.WriteFile(content=base64.b64encode(content).decode(), encoding="base64")
    else:
        body = bodies.WriteFile(content=content, encoding="text")
    where = f"{API}/tasks/{seg(run_id)}/files/{file_path(path)}"
    return Call("PUT", where, m.FileChange, json=body.wire())


def delete_file(run_id: str, path: str) -> Call[m.FileChange]:
    return Call("DELETE", f"{API}/tasks/{seg(run_id)}/files/{file_path(path)}", m.FileChange)


def upload(
    run_id: str, files: Mapping[str, bytes], directory: str | None = None
) -> Call[m.UploadResult]:
    parts = [("file", (name, content)) for name, content in files.items()]
    data = {"path": directory} if directory else {}
    where = f"{API}/tasks/{seg(run_id)}/files/upload"
    return Call("POST", where, m.UploadResult, files=parts, data=data)


def download_path(run_id: str) -> str:
    return f"{API}/tasks/{seg(run_id)}/files/download"


def group(task_id: str) -> Call[m.Group]:
    return Call("GET", f"{API}/groups/{seg(task_id)}", m.Group)


def compare(task_id: str) -> Call[m.Comparison]:
    return Call("GET", f"{API}/groups/{seg(task_id)}/compare", m.Comparison)


def select(task_id: str, run_id: str, pull_request: bool | None = None) -> Call[m.Group]:
    body = bodies.SelectWinner(run_id=run_id, create_pull_request=pull_request)
    return Call("POST", f"{API}/groups/{seg(task_id)}/select", m.Group, json=body.wire())


def cancel_group(task_id: str) -> Call[m.Group]:
    body = bodies.CancelGroup(action="cancel")
    return Call("PATCH", f"{API}/groups/{seg(task_id)}", m.Group, json=body.wire())


def git_connect(token: str) -> Call[m.GitConnected]:
    body = bodies.ConnectGit(github_token=token)
    return Call("POST", f"{API}/git/config", m.GitConnected, json=body.wire())


def git_config() -> Call[m.GitAccount]:
    return Call("GET", f"{API}/git/config", m.GitAccount)


def git_status() -> Call[m.GitAccount]:
    return Call("GET", f"{API}/git/status", m.GitAccount)


def git_disconnect() -> Call[m.Done]:
    return Call("DELETE", f"{API}/git/clean", m.Done)


def git_repos(include_orgs: bool = True) -> Call[m.Repos]:
    return Call("GET", f"{API}/git/repos", m.Repos, params=params(include_orgs=include_orgs))


def git_branches(owner: str, repo: str, protected_only: bool = False) -> Call[m.Branches]:
    query = params(owner=owner, repo=repo, protected_only=protected_only)
    return Call("GET", f"{API}/git/branches", m.Branches, params=query)


def agents() -> Call[m.Agents]:
    return Call("GET", f"{API}/agents", m.Agents)


def health() -> Call[m.Health]:
    return Call("GET", "/healthz", m.Health)
