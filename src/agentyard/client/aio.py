"""``AsyncClient``: the Agent API v1 from asyncio code (the same methods as ``Client``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import TypeVar

import httpx
from pydantic import BaseModel

from agentyard.client import bodies, calls
from agentyard.client import models as m
from agentyard.client.base import TERMINAL, Resume, SseParser, default_key, default_url, headers
from agentyard.client.errors import ConnectionFailed, ServerError, check, error_for
from agentyard.client.sync import STREAM_READ_TIMEOUT

M = TypeVar("M", bound=BaseModel)


class AsyncClient:
    """A client of one server, as one key (``url``/``key`` default to ``AGENTYARD_URL`` /
    ``AGENTYARD_KEY``, else ``http://127.0.0.1:8080`` and ``./.agentyard/admin.key``).

    Every method returns a pydantic model of the answer, or raises the typed error of the
    server's answer (``NotFound``, ``Conflict``, ...) with its message.
    """

    def __init__(
        self,
        url: str | None = None,
        key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = default_url(url)
        self.key = default_key(key)
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=headers(self.key), timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _send(self, call: calls.Call[M]) -> M:
        try:
            response = await self._http.request(call.method, call.path, **call.request())
        except httpx.TransportError as exc:
            raise ConnectionFailed(f"cannot reach {self.url}: {exc}") from exc
        return call.parse(response)

    # -- tasks --------------------------------------------------------------------------

    async def create_task(
        self,
        prompt: str,
        *,
        agent: str | None = None,
        model: str | None = None,
        title: str | None = None,
        repo_url: str | None = None,
        branch: str | None = None,
        pull_request: bool | None = None,
        env: calls.EnvVars | None = None,
        agents: Sequence[str | bodies.AgentChoice] | None = None,
    ) -> m.CreatedTask:
        """Create a task; with ``agents`` (2 to 5) a multi-agent group."""
        return await self._send(
            calls.create_task(
                prompt,
                agent=agent,
                model=model,
                title=title,
                repo_url=repo_url,
                branch=branch,
                pull_request=pull_request,
                env=env,
                agents=agents,
            )
        )

    async def list_tasks(
        self, page: int = 1, limit: int = 20, status: str | None = None
    ) -> m.TaskList:
        return await self._send(calls.list_tasks(page, limit, status))

    async def get_task(self, run_id: str) -> m.Task:
        return await self._send(calls.get_task(run_id))

    async def status(self, run_id: str) -> m.RunStatus:
        return await self._send(calls.status(run_id))

    async def continue_task(
        self,
        run_id: str,
        prompt: str,
        *,
        agent: str | None = None,
        model: str | None = None,
        env: calls.EnvVars | None = None,
    ) -> m.ContinuedTask:
        return await self._send(
            calls.continue_task(run_id, prompt, agent=agent, model=model, env=env)
        )

    async def cancel(self, run_id: str) -> m.UpdateResult:
        """Cancel the run; ``success`` is false if it had already ended."""
        return await self._send(calls.update_task(run_id, bodies.UpdateTask(action="cancel")))

    async def rename(self, run_id: str, title: str) -> m.UpdateResult:
        return await self._send(calls.update_task(run_id, bodies.UpdateTask(title=title)))

    async def diff(self, run_id: str) -> m.Diff:
        return await self._send(calls.diff(run_id))

    async def logs(self, run_id: str, include_deltas: bool = True) -> m.Logs:
        return await self._send(calls.logs(run_id, include_deltas))

    async def raw_status(self, run_id: str) -> m.RawStatus:
        """``/agent/status``: nulls, not an error, for an unknown run."""
        return await self._send(calls.raw_status(run_id))

    async def stream(
        self,
        run_id: str,
        *,
        after: int = 0,
        include_deltas: bool = True,
        raw: bool = False,
        max_reconnects: int = 20,
    ) -> AsyncIterator[m.Event]:
        """The run's events after ``after``, as they come, ending after ``finish``.

        A dropped connection is resumed with ``Last-Event-ID``: no event is lost or repeated.
        ``raw`` reads ``/agent/stream`` instead of ``/tasks/{id}/logs/stream``. After
        ``max_reconnects`` attempts in a row without a new event it raises ``ConnectionFailed``.
        """
        path, query = calls.stream_path(run_id, raw)
        if not include_deltas and not raw:
            query["includeDeltas"] = "false"
        resume = Resume(last=after, max_failures=max_reconnects)
        while True:
            problem: Exception | None = None
            try:
                async with self._http.stream(
                    "GET",
                    path,
                    params=query,
                    headers=resume.headers(),
                    timeout=httpx.Timeout(self._http.timeout.connect, read=STREAM_READ_TIMEOUT),
                ) as response:
                    if response.status_code == 204:
                        return  # a finished run whose last event we already hold
                    if response.status_code >= 400:
                        error = error_for(response.status_code, await response.aread())
                        if not isinstance(error, ServerError):
                            raise error
                        problem = error
                    else:
                        parser = SseParser()
                        async for line in response.aiter_lines():
                            event = parser.feed(line)
                            if event is not None and resume.accept(event):
                                yield event
                                if resume.finished:
                                    return
            except httpx.TransportError as exc:
                problem = exc
            # The stream broke off (or the server is restarting): resume where it stopped.
            delay = resume.next_delay()
            if delay is None:
                raise ConnectionFailed(f"stream of {run_id} lost: {problem}")
            await asyncio.sleep(delay)

    async def wait(self, run_id: str, timeout: float | None = None, poll: float = 0.5) -> m.Task:
        """Block until the run ends; its final task. ``TimeoutError`` after ``timeout`` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (await self.status(run_id)).status not in TERMINAL:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"run {run_id} still active after {timeout} s")
            await asyncio.sleep(poll)
        return await self.get_task(run_id)

    # -- files --------------------------------------------------------------------------

    async def list_files(self, run_id: str, path: str = "", recursive: bool = False) -> m.FileList:
        return await self._send(calls.list_files(run_id, path, recursive))

    async def read_file(self, run_id: str, path: str) -> m.FileContent:
        return await self._send(calls.read_file(run_id, path))

    async def write_file(self, run_id: str, path: str, content: str | bytes) -> m.FileChange:
        """Write text (sent as text) or bytes (sent as base64)."""
        return await self._send(calls.write_file(run_id, path, content))

    async def delete_file(self, run_id: str, path: str) -> m.FileChange:
        return await self._send(calls.delete_file(run_id, path))

    async def upload(
        self, run_id: str, files: Mapping[str, bytes], directory: str | None = None
    ) -> m.UploadResult:
        return await self._send(calls.upload(run_id, files, directory))

    async def download(self, run_id: str, format: str = "zip", path: str = "") -> bytes:
        """The workspace (or ``path`` in it) as a zip or tar.gz archive."""
        query = {"format": format, **({"path": path} if path else {})}
        try:
            response = await self._http.get(calls.download_path(run_id), params=query)
        except httpx.TransportError as exc:
            raise ConnectionFailed(f"cannot reach {self.url}: {exc}") from exc
        return check(response).content

    # -- groups -------------------------------------------------------------------------

    async def group(self, task_id: str) -> m.Group:
        return await self._send(calls.group(task_id))

    async def compare(self, task_id: str) -> m.Comparison:
        return await self._send(calls.compare(task_id))

    async def select(self, task_id: str, run_id: str, pull_request: bool | None = None) -> m.Group:
        return await self._send(calls.select(task_id, run_id, pull_request))

    async def cancel_group(self, task_id: str) -> m.Group:
        return await self._send(calls.cancel_group(task_id))

    # -- git, agents ----------------------------------------------------------------------

    async def git_connect(self, token: str) -> m.GitConnected:
        return await self._send(calls.git_connect(token))

    async def git_config(self) -> m.GitAccount:
        return await self._send(calls.git_config())

    async def git_status(self) -> m.GitAccount:
        return await self._send(calls.git_status())

    async def git_disconnect(self) -> m.Done:
        return await self._send(calls.git_disconnect())

    async def git_repos(self, include_orgs: bool = True) -> m.Repos:
        return await self._send(calls.git_repos(include_orgs))

    async def git_branches(self, owner: str, repo: str, protected_only: bool = False) -> m.Branches:
        return await self._send(calls.git_branches(owner, repo, protected_only))

    async def agents(self) -> m.Agents:
        return await self._send(calls.agents())

    async def health(self) -> m.Health:
        return await self._send(calls.health())
