"""What the client and CLI tests share: the script, a server with both agents, a fake GitHub."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from agentyard.testing.fake_github import FakeGitHub, FakeRepo
from agentyard.testing.harness import ServerProcess, server_env
from agentyard.testing.scripted_model import ScriptedModelServer

TOKEN = "ghp_clientTestToken0123456789"
PATCH = "*** Begin Patch\n*** Add File: hello.txt\n+hello\n*** End Patch\n"

SCRIPT: dict[str, Any] = {
    "scenarios": [
        {
            "match": "^write hello",
            "turns": [
                {
                    "text": "I'll write the file.",
                    "tool_calls": [
                        {
                            "name": "Write",
                            "input": {"file_path": "{cwd}/hello.txt", "content": "hello\n"},
                        }
                    ],
                    "openai": {"tool_calls": [{"name": "apply_patch", "input": PATCH}]},
                },
                {"text": "Wrote hello.txt."},
            ],
        },
        {
            # Two steps with a pause between them: a window to drop a stream mid-run.
            "match": "^stepwise",
            "turns": [
                {
                    "text": "Step one.",
                    "tool_calls": [{"name": "Bash", "input": {"command": "echo one"}}],
                },
                {
                    "delay": 2,
                    "text": "Step two.",
                    "tool_calls": [{"name": "Bash", "input": {"command": "echo two"}}],
                },
                {"text": "All done."},
            ],
        },
        {"match": "^slow", "turns": [{"delay": 120, "text": "too late"}]},
        {"match": "^overloaded", "turns": [{"status": 500, "error": "model melted"}]},
        {"turns": [{"text": "ok"}]},
    ]
}


@dataclass
class Yard:
    server: ServerProcess
    model: ScriptedModelServer
    github: FakeGitHub

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="module")
def yard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Yard]:
    data = tmp_path_factory.mktemp("yard")
    with ScriptedModelServer(SCRIPT) as model, FakeGitHub() as github:
        github.add_user(TOKEN, "octocat")
        github.add_repo(FakeRepo("octocat", "arena"))
        env = server_env(
            data,
            {
                "ANTHROPIC_BASE_URL": model.url,
                "ANTHROPIC_API_KEY": "sk-ant-scripted",
                "AGENTYARD_CLAUDE_ENV": '{"CLAUDE_CODE_MAX_RETRIES": "0"}',
                "OPENAI_BASE_URL": model.url + "/v1",
                "OPENAI_API_KEY": "sk-openai-scripted",
                "AGENTYARD_CODEX_MAX_RETRIES": "0",
                "AGENTYARD_MAX_CONCURRENT_RUNS": "4",
                "AGENTYARD_GITHUB_API_URL": github.url,
            },
        )
        server = ServerProcess(data, env).start()
        try:
            yield Yard(server, model, github)
        finally:
            server.stop()
