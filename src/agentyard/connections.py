"""Use cases of a user's GitHub connection: connect, inspect, list, disconnect.

The token is validated against the GitHub API, stored encrypted, and never returned.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from agentyard.core.clock import iso
from agentyard.core.errors import Forbidden, InvalidInput
from agentyard.core.models import Chat, Run
from agentyard.core.repo_rules import parse_repo_url
from agentyard.crypto import SecretBox
from agentyard.store.store import Store
from agentyard.workspace.github import GitHub, GitHubError
from agentyard.workspace.repo_policy import check_resolves_publicly

_GITHUB_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")


class GitConnections:
    def __init__(self, store: Store, box: SecretBox, github: GitHub) -> None:
        self.store = store
        self.box = box
        self.github = github

    async def connect(self, user_id: str, token: str) -> dict[str, Any]:
        token = token.strip()
        if not token:
            raise InvalidInput("'githubToken' is required")
        if not (token.isascii() and token.isprintable()) or " " in token:
            raise InvalidInput("'githubToken' must be printable ASCII without spaces")
        try:
            profile = await self.github.user(token)
        except GitHubError as exc:
            raise InvalidInput(f"GitHub rejected the token ({exc})") from None
        await self.store.put_git_credential(
            user_id,
            token_encrypted=self.box.seal(token),
            login=profile.login,
            scopes=profile.scopes,
            profile={
                "name": profile.name,
                "email": profile.email,
                "avatarUrl": profile.avatar_url,
            },
        )
        return {"success": True, "login": profile.login}

    async def config(self, user_id: str) -> dict[str, Any]:
        row = await self.store.get_git_credential(user_id)
        if row is None:
            return {"connected": False}
        profile = row.get("profile") or {}
        return {
            "connected": True,
            "login": row["login"],
            "name": profile.get("name"),
            "email": profile.get("email"),
            "avatarUrl": profile.get("avatarUrl"),
            "scopes": row.get("scopes"),
            "tokenCreatedAt": iso(row["created_at"]),
        }

    async def status(self, user_id: str) -> dict[str, Any]:
        token = await self.token(user_id)
        if token is None:
            return {"connected": False, "message": "No GitHub token found"}
        try:
            profile = await self.github.user(token)
        except GitHubError as exc:
            return {"connected": True, "tokenValid": False, "message": str(exc)}
        return {
            "connected": True,
            "tokenValid": True,
            "login": profile.login,
            "name": profile.name,
            "email": profile.email,
            "avatarUrl": profile.avatar_url,
            "scopes": profile.scopes,
            "publicRepos": profile.public_repos,
            "privateRepos": profile.private_repos,
        }

    async def disconnect(self, user_id: str) -> dict[str, Any]:
        await self.store.delete_git_credential(user_id)
        return {"success": True, "message": "GitHub access tokens purged successfully"}

    async def repos(self, user_id: str, include_orgs: bool) -> dict[str, Any]:
        token = await self._required(user_id)
        repos = await self._call(self.github.repos(token, include_orgs))
        return {"repos": repos, "total": len(repos)}

    async def branches(
        self, user_id: str, owner: str | None, repo: str | None, protected_only: bool
    ) -> dict[str, Any]:
        if not owner or not repo:
            raise InvalidInput("'owner' and 'repo' query parameters are required")
        for name, value in (("owner", owner), ("repo", repo)):
            # They become a GitHub API path: a name GitHub could never have is refused here.
            if not _GITHUB_NAME.fullmatch(value) or value in (".", ".."):
                raise InvalidInput(
                    f"'{name}' must be a GitHub name: letters, digits, '.', '_' or '-' "
                    "(at most 100)"
                )
        token = await self._required(user_id)
        branches, default = await self._call(
            self.github.branches(token, owner, repo, protected_only)
        )
        return {"branches": branches, "default_branch": default, "total": len(branches)}

    async def open_pull_request(self, run: Run, chat: Chat, token: str) -> dict[str, Any]:
        """A pull request from the chat's branch; its URL and number, or why it failed (the
        pushed branch stands either way)."""
        assert chat.repo_url and chat.created_branch and chat.base_branch
        owner, _, repo = (
            urlsplit(chat.repo_url).path.strip("/").removesuffix(".git").rpartition("/")
        )
        title = (run.prompt.strip().splitlines() or ["Agent run"])[0][:100]
        body = f"{run.prompt}\n\n---\nOpened by Agentyard for run {run.run_id} ({run.agent})."
        try:
            url, number = await self.github.create_pull_request(
                token, owner, repo, chat.created_branch, chat.base_branch, title, body
            )
        except GitHubError as exc:
            return {"prError": str(exc)}
        return {"prUrl": url, "prNumber": number}

    async def token(self, user_id: str) -> str | None:
        """The user's token in clear, for git and the GitHub API only."""
        row = await self.store.get_git_credential(user_id)
        return None if row is None else self.box.open(row["token_encrypted"])

    async def _required(self, user_id: str) -> str:
        token = await self.token(user_id)
        if token is None:
            raise Forbidden("No GitHub token stored: connect GitHub with POST /api/v1/git/config")
        return token

    @staticmethod
    async def _call(awaitable: Any) -> Any:
        try:
            return await awaitable
        except GitHubError as exc:
            if exc.status == 404:
                raise InvalidInput(f"repository not found on GitHub ({exc})") from None
            raise InvalidInput(str(exc)) from None


class RepositoryRules:
    """A task's ``repoUrl``: the URL rules, the DNS rule, and a stored token to push with."""

    def __init__(
        self, connections: GitConnections, hosts: list[str], private_hosts: list[str]
    ) -> None:
        self.connections = connections
        self.hosts = hosts
        self.private_hosts = private_hosts

    async def check(self, user_id: str, repo_url: str) -> str:
        repo = parse_repo_url(repo_url, self.hosts)
        await check_resolves_publicly(repo, self.private_hosts)
        if await self.connections.token(user_id) is None:
            raise InvalidInput(
                "repoUrl needs a GitHub token to push with: connect GitHub first "
                "(POST /api/v1/git/config)"
            )
        return repo.url
