"""The GitHub REST API: token validation, repositories, branches, pull requests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from agentyard.core.errors import InvalidInput

_PAGES = 10


class GitHubError(Exception):
    """GitHub answered with an error (the message is GitHub's, never the token)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class GitHubUser:
    login: str
    name: str | None
    email: str | None
    avatar_url: str | None
    scopes: str | None
    public_repos: int | None
    private_repos: int | None


class GitHub:
    def __init__(self, api_url: str, timeout: float = 15.0) -> None:
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout

    def _client(self, token: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.api_url,
            timeout=self.timeout,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
                "User-Agent": "agentyard",
            },
        )

    async def _get(self, client: httpx.AsyncClient, path: str, **params: Any) -> httpx.Response:
        try:
            response = await client.get(path, params=params or None)
        except httpx.HTTPError as exc:
            raise GitHubError(502, f"GitHub API unreachable: {type(exc).__name__}") from None
        if response.status_code >= 400:
            raise GitHubError(response.status_code, _message(response))
        return response

    async def user(self, token: str) -> GitHubUser:
        async with self._client(token) as client:
            response = await self._get(client, "/user")
        data = response.json()
        plan_private = data.get("total_private_repos", data.get("owned_private_repos"))
        return GitHubUser(
            login=str(data.get("login")),
            name=data.get("name"),
            email=data.get("email"),
            avatar_url=data.get("avatar_url"),
            scopes=response.headers.get("x-oauth-scopes"),
            public_repos=data.get("public_repos"),
            private_repos=plan_private,
        )

    async def repos(self, token: str, include_orgs: bool = True) -> list[dict[str, Any]]:
        affiliation = "owner,collaborator,organization_member" if include_orgs else "owner"
        seen: dict[str, dict[str, Any]] = {}
        async with self._client(token) as client:
            for page in range(1, _PAGES + 1):
                response = await self._get(
                    client, "/user/repos", per_page=100, page=page, affiliation=affiliation
                )
                batch = response.json()
                for repo in batch:
                    seen.setdefault(
                        str(repo.get("full_name")),
                        {
                            key: repo.get(key)
                            for key in (
                                "id",
                                "name",
                                "full_name",
                                "private",
                                "html_url",
                                "description",
                                "fork",
                                "default_branch",
                                "updated_at",
                            )
                        },
                    )
                if len(batch) < 100:
                    break
        return list(seen.values())

    async def branches(
        self, token: str, owner: str, repo: str, protected_only: bool = False
    ) -> tuple[list[dict[str, Any]], str | None]:
        async with self._client(token) as client:
            info = (await self._get(client, f"/repos/{owner}/{repo}")).json()
            result: list[dict[str, Any]] = []
            for page in range(1, _PAGES + 1):
                params: dict[str, Any] = {"per_page": 100, "page": page}
                if protected_only:
                    params["protected"] = "true"
                batch = (
                    await self._get(client, f"/repos/{owner}/{repo}/branches", **params)
                ).json()
                result.extend(
                    {
                        "name": b.get("name"),
                        "protected": bool(b.get("protected")),
                        "commit": {
                            "sha": (b.get("commit") or {}).get("sha"),
                            "url": (b.get("commit") or {}).get("url"),
                        },
                    }
                    for b in batch
                )
                if len(batch) < 100:
                    break
        return result, info.get("default_branch")

    async def create_pull_request(
        self, token: str, owner: str, repo: str, head: str, base: str, title: str, body: str
    ) -> tuple[str, int]:
        async with self._client(token) as client:
            try:
                response = await client.post(
                    f"/repos/{owner}/{repo}/pulls",
                    json={"head": head, "base": base, "title": title, "body": body},
                )
            except httpx.HTTPError as exc:
                raise GitHubError(502, f"GitHub API unreachable: {type(exc).__name__}") from None
        if response.status_code >= 400:
            raise GitHubError(response.status_code, _message(response))
        data = response.json()
        return str(data.get("html_url")), int(data.get("number"))


def _message(response: httpx.Response) -> str:
    try:
        detail = response.json().get("message")
    except ValueError:
        detail = None
    return f"GitHub answered {response.status_code}" + (f": {detail}" if detail else "")


def require_token(token: str | None) -> str:
    if not token:
        raise InvalidInput("no GitHub token stored: POST /api/v1/git/config first")
    return token
