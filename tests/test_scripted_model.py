"""The scripted model server: its protocol answers, and the real Claude CLI and codex against it."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import claude_agent_sdk as sdk
import codex_cli_bin
import httpx
import pytest

from agentyard.testing.scripted_model import ScriptedModelServer, iter_sse, load_script

EXAMPLE = Path(__file__).parent.parent / "examples" / "scripted-model.json"

WRITE_THEN_DONE = {
    "scenarios": [
        {
            "turns": [
                {
                    "text": "Writing it.",
                    "tool_calls": [
                        {
                            "name": "Write",
                            "input": {"file_path": "{cwd}/hello.txt", "content": "hello\n"},
                        }
                    ],
                },
                {"tool_calls": [{"name": "Bash", "input": {"command": "echo ran > ran.txt"}}]},
                {"text": "all done"},
            ]
        }
    ]
}

TOOLS = [{"name": "Bash", "description": "run", "input_schema": {"type": "object"}}]


@pytest.fixture
def server() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer(WRITE_THEN_DONE) as s:
        yield s


def _messages(client: httpx.Client, messages: list[dict[str, Any]], **extra: Any) -> httpx.Response:
    body = {"model": "m", "max_tokens": 10, "messages": messages, "tools": TOOLS, **extra}
    return client.post("/v1/messages?beta=true", json=body)


def _streamed_blocks(response: httpx.Response) -> tuple[list[dict[str, Any]], str]:
    """The content blocks and stop reason of an Anthropic SSE answer."""
    blocks: list[dict[str, Any]] = []
    stop = ""
    for kind, data in iter_sse(response.content):
        if kind == "content_block_start":
            blocks.append(dict(data["content_block"]))
        elif kind == "content_block_delta" and data["delta"]["type"] == "text_delta":
            blocks[data["index"]]["text"] += data["delta"]["text"]
        elif kind == "content_block_delta" and data["delta"]["type"] == "input_json_delta":
            blocks[data["index"]]["input"] = json.loads(data["delta"]["partial_json"])
        elif kind == "message_delta":
            stop = data["delta"]["stop_reason"]
    return blocks, stop


def test_health_request_log_and_clearing(server: ScriptedModelServer) -> None:
    """Every model request is logged (path, api, model, scenario, step, body); DELETE clears."""
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/_health").status_code == 200
        _messages(client, [{"role": "user", "content": "hi"}], stream=True)
        logged = client.get("/_requests").json()
        assert len(logged) == 1
        entry = logged[0]
        assert entry["path"] == "/v1/messages?beta=true"
        assert (entry["api"], entry["model"], entry["scenario"], entry["step"]) == (
            "anthropic",
            "m",
            0,
            0,
        )
        assert entry["body"]["messages"] == [{"role": "user", "content": "hi"}]
        assert server.requests[0]["body"] == entry["body"]
        assert client.delete("/_requests").json() == {"cleared": 1}
        assert client.get("/_requests").json() == []


def test_streamed_turn_has_tool_use_and_usage(server: ScriptedModelServer) -> None:
    """A turn with tool calls streams text + tool_use blocks, stop_reason tool_use, and usage."""
    with httpx.Client(base_url=server.url) as client:
        response = _messages(client, [{"role": "user", "content": "go"}], stream=True)
    assert response.headers["content-type"].startswith("text/event-stream")
    blocks, stop = _streamed_blocks(response)
    assert [b["type"] for b in blocks] == ["text", "tool_use"]
    assert blocks[0]["text"] == "Writing it."
    assert blocks[1]["name"] == "Write"
    assert blocks[1]["input"] == {"file_path": "{cwd}/hello.txt", "content": "hello\n"}
    assert stop == "tool_use"
    start = next(d for k, d in iter_sse(response.content) if k == "message_start")
    assert start["message"]["usage"]["input_tokens"] > 0


def test_step_counts_assistant_turns_since_the_latest_real_prompt(
    server: ScriptedModelServer,
) -> None:
    """Tool results are not prompts; a new prompt after a finished exchange restarts at step 0."""
    first_turn: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "text", "text": "go"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Write"}]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "ok"},
                {"type": "text", "text": "<system-reminder>\nnot a prompt\n</system-reminder>"},
            ],
        },
    ]
    with httpx.Client(base_url=server.url) as client:
        blocks, _ = _streamed_blocks(_messages(client, first_turn, stream=True))
        assert blocks[0]["name"] == "Bash"
        answer = _messages(client, first_turn, stream=False).json()  # non-streaming JSON
        assert answer["content"][0]["name"] == "Bash"
        assert answer["stop_reason"] == "tool_use"
        assert answer["usage"]["output_tokens"] > 0
        continued: list[dict[str, Any]] = [
            *first_turn,
            {"role": "assistant", "content": [{"type": "text", "text": "done"}]},
            {"role": "user", "content": "and again"},
        ]
        blocks, _ = _streamed_blocks(_messages(client, continued, stream=True))
        assert blocks[1]["name"] == "Write"
        exchange: list[dict[str, Any]] = [
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Bash"}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]},
        ]
        past_end: list[dict[str, Any]] = [{"role": "user", "content": "go"}, *exchange * 3]
        blocks, stop = _streamed_blocks(_messages(client, past_end, stream=True))
        assert (blocks, stop) == ([{"type": "text", "text": "done"}], "end_turn")
    assert [r["step"] for r in server.requests] == [1, 1, 0, 3]
    assert server.requests[2]["prompt"] == "and again"


def test_scenario_chosen_by_regex_on_the_prompt_and_cwd_replaced() -> None:
    """``match`` picks the scenario from the current prompt; ``{cwd}`` comes from the request."""
    script = {
        "scenarios": [
            {"turns": [{"text": "default"}]},
            {"match": r"fix (the )?bug", "turns": [{"text": "fixing in {cwd}"}]},
        ]
    }
    reminder = "<system-reminder>\n - Primary working directory: /work/repo\n</system-reminder>"
    with ScriptedModelServer(script) as srv, httpx.Client(base_url=srv.url) as client:
        prompt = [{"type": "text", "text": reminder}, {"type": "text", "text": "please fix bug"}]
        answer = _messages(client, [{"role": "user", "content": prompt}]).json()
        assert answer["content"] == [{"type": "text", "text": "fixing in /work/repo"}]
        answer = _messages(client, [{"role": "user", "content": "something else"}]).json()
        assert answer["content"][0]["text"] == "default"
        # A regex matching only the reminder does not select the scenario.
        srv.set_script({"scenarios": [{"match": "Primary", "turns": [{"text": "wrong"}]}]})
        answer = _messages(client, [{"role": "user", "content": prompt}]).json()
        assert answer["content"][0]["text"] == "done"
        assert srv.requests[0]["cwd"] == "/work/repo"


def test_script_replaced_over_http_and_bad_scripts_refused(server: ScriptedModelServer) -> None:
    """POST /_script swaps the script at runtime; a malformed one is a 400 and changes nothing."""
    with httpx.Client(base_url=server.url) as client:
        assert client.post(
            "/_script", json={"scenarios": [{"turns": [{"text": "new"}]}]}
        ).is_success
        bad = client.post("/_script", json={"scenarios": [{"match": "(", "turns": []}]})
        assert bad.status_code == 400
        assert "regex" in bad.json()["error"]["message"]
        answer = _messages(client, [{"role": "user", "content": "x"}]).json()
        assert answer["content"][0]["text"] == "new"


def test_scripted_errors_use_each_apis_error_shape() -> None:
    """A ``status`` turn answers with that HTTP code and the API's own error JSON."""
    script = {"scenarios": [{"turns": [{"status": 529, "error": "busy"}]}]}
    with ScriptedModelServer(script) as srv, httpx.Client(base_url=srv.url) as client:
        response = _messages(client, [{"role": "user", "content": "x"}], stream=True)
        assert response.status_code == 529
        assert response.json() == {
            "type": "error",
            "error": {"type": "overloaded_error", "message": "busy"},
        }
        srv.set_script({"scenarios": [{"turns": [{"status": 500, "error": "boom"}]}]})
        response = client.post("/v1/responses", json={"model": "m", "input": "x", "tools": TOOLS})
        assert response.status_code == 500
        assert response.json()["error"]["message"] == "boom"


def test_side_requests_and_count_tokens_get_plain_answers(server: ScriptedModelServer) -> None:
    """A request without tools gets a short text and no step; count_tokens gives a number."""
    with httpx.Client(base_url=server.url) as client:
        body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "title"}]}
        answer = client.post("/v1/messages", json=body).json()
        assert answer["content"][0]["type"] == "text"
        assert answer["stop_reason"] == "end_turn"
        counted = client.post("/v1/messages/count_tokens?beta=true", json=body).json()
        assert counted["input_tokens"] > 0
    assert server.requests[0]["side"] is True
    assert server.requests[0]["step"] is None


def test_openai_responses_step_tools_and_cwd() -> None:
    """Responses API: steps count model turns after the prompt; apply_patch is a custom tool."""
    script = {
        "scenarios": [
            {
                "turns": [
                    {"tool_calls": [{"name": "apply_patch", "input": "*** Begin Patch\n"}]},
                    {"tool_calls": [{"name": "exec_command", "input": {"cmd": "ls {cwd}"}}]},
                ]
            }
        ]
    }
    env = "<environment_context>\n  <cwd>/srv/repo</cwd>\n</environment_context>"
    history: list[dict[str, Any]] = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": env}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "go"}]},
    ]
    with ScriptedModelServer(script) as srv, httpx.Client(base_url=srv.url) as client:
        body = {"model": "gpt-5.5", "input": history, "tools": TOOLS, "stream": True}
        events = list(iter_sse(client.post("/v1/responses", json=body).content))
        assert events[0][0] == "response.created"
        done = [d["item"] for k, d in events if k == "response.output_item.done"]
        assert [(i["type"], i["name"], i["input"]) for i in done] == [
            ("custom_tool_call", "apply_patch", "*** Begin Patch\n")
        ]
        completed = events[-1][1]["response"]
        assert events[-1][0] == "response.completed"
        assert completed["usage"]["input_tokens"] > 0
        history += [done[0], {"type": "custom_tool_call_output", "call_id": "c", "output": "ok"}]
        body["stream"] = False
        output = client.post("/v1/responses", json=body).json()["output"]
        assert output[0]["type"] == "function_call"
        assert json.loads(output[0]["arguments"]) == {"cmd": "ls /srv/repo"}
    assert [(r["step"], r["cwd"], r["prompt"]) for r in srv.requests] == [
        (0, "/srv/repo", "go"),
        (1, "/srv/repo", "go"),
    ]


def test_a_delayed_answer_does_not_hold_up_others() -> None:
    """While one request sleeps through its ``delay``, others on other connections are answered."""
    script = {
        "scenarios": [
            {"match": "slow", "turns": [{"delay": 2, "text": "late"}]},
            {"turns": [{"text": "quick"}]},
        ]
    }
    with ScriptedModelServer(script) as srv:
        slow: list[str] = []

        def call_slow() -> None:
            with httpx.Client(base_url=srv.url) as c:
                slow.append(_messages(c, [{"role": "user", "content": "slow"}]).json()["id"])

        thread = threading.Thread(target=call_slow)
        thread.start()
        for _ in range(100):
            if srv.requests:
                break
            time.sleep(0.02)
        with httpx.Client(base_url=srv.url) as client:
            for _ in range(5):  # keep-alive: one connection, several requests
                answer = _messages(client, [{"role": "user", "content": "fast"}]).json()
                assert answer["content"][0]["text"] == "quick"
        assert not slow  # all five were answered while the slow one still waited
        thread.join(5)
        assert slow


# --------------------------------------------------------------------------- real CLIs


async def test_real_claude_cli_writes_a_file_and_runs_bash(
    server: ScriptedModelServer, tmp_path: Path
) -> None:
    """The bundled Claude Code CLI, via the SDK, follows the script: Write, then Bash, then text."""
    workspace = tmp_path / "ws"
    workspace.mkdir()
    options = sdk.ClaudeAgentOptions(
        cwd=str(workspace),
        system_prompt={"type": "preset", "preset": "claude_code"},
        permission_mode="bypassPermissions",
        setting_sources=[],
        model="claude-sonnet-4-5",
        env={
            "ANTHROPIC_BASE_URL": server.url,
            "ANTHROPIC_API_KEY": "dummy",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "IS_SANDBOX": "1",
            "CLAUDE_CONFIG_DIR": str(tmp_path / "claude"),
            "CLAUDE_CODE_MAX_RETRIES": "0",
        },
    )
    messages = [m async for m in sdk.query(prompt="Create hello.txt", options=options)]
    result = messages[-1]
    assert isinstance(result, sdk.ResultMessage)
    assert (result.subtype, result.is_error, result.result) == ("success", False, "all done")
    assert (workspace / "hello.txt").read_text() == "hello\n"
    assert (workspace / "ran.txt").read_text() == "ran\n"
    model_calls = [r for r in server.requests if r["api"] == "anthropic"]
    assert [r["step"] for r in model_calls] == [0, 1, 2]
    assert {r["cwd"] for r in model_calls} == {str(workspace)}
    assert {r["prompt"] for r in model_calls} == {"Create hello.txt"}
    assert model_calls[0]["headers"]["x-api-key"] == "dummy"


def _codex_home(tmp_path: Path, url: str) -> Path:
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(
        f"""model = "gpt-5.5"
model_provider = "stub"
check_for_update_on_startup = false

[analytics]
enabled = false

[features]
plugins = false

[model_providers.stub]
name = "Scripted model"
base_url = "{url}/v1"
env_key = "STUB_API_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
"""
    )
    return home


def _codex(home: Path, workspace: Path, *args: str) -> tuple[int, list[dict[str, Any]]]:
    """Run ``codex exec --json`` (stdin closed: it would wait for EOF) and parse its events."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CODEX_"))}
    env.update(CODEX_HOME=str(home), STUB_API_KEY="dummy")
    argv = [
        str(codex_cli_bin.bundled_codex_path()),
        "exec",
        "--json",
        "-C",
        str(workspace),
        "--skip-git-repo-check",
        "--dangerously-bypass-approvals-and-sandbox",
        *args,
    ]
    proc = subprocess.run(
        argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
    )
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, events


CODEX_SCRIPT = {
    "scenarios": [
        {"match": "^fail", "turns": [{"status": 500, "error": "scripted outage"}]},
        {
            "turns": [
                {
                    "text": "Adding the file.",
                    "tool_calls": [
                        {
                            "name": "apply_patch",
                            "input": "*** Begin Patch\n*** Add File: hello.txt\n+hello\n"
                            "*** End Patch\n",
                        }
                    ],
                },
                {"tool_calls": [{"name": "exec_command", "input": {"cmd": "pwd > {cwd}/pwd.txt"}}]},
                {"text": "done here"},
            ]
        },
    ]
}


def test_real_codex_applies_a_patch_runs_a_command_and_resumes(tmp_path: Path) -> None:
    """codex exec follows the script (apply_patch, exec_command); a resume resends the thread."""
    workspace = tmp_path / "ws"
    workspace.mkdir()
    with ScriptedModelServer(CODEX_SCRIPT) as srv:
        home = _codex_home(tmp_path, srv.url)
        code, events = _codex(home, workspace, "Create hello.txt")
        assert code == 0, events
        assert (workspace / "hello.txt").read_text() == "hello\n"
        assert (workspace / "pwd.txt").read_text().strip() == str(workspace)
        kinds = [e["item"]["type"] for e in events if e["type"] == "item.completed"]
        assert kinds == ["agent_message", "file_change", "command_execution", "agent_message"]
        assert events[-1]["type"] == "turn.completed"
        assert [(r["step"], r["cwd"]) for r in srv.requests] == [(0, str(workspace))] * 1 + [
            (1, str(workspace)),
            (2, str(workspace)),
        ]
        thread_id = events[0]["thread_id"]
        srv.clear_requests()
        srv.set_script({"scenarios": [{"turns": [{"text": "resumed fine"}]}]})
        code, events = _codex(home, workspace, "resume", thread_id, "And now?")
        assert code == 0, events
        assert events[0] == {"type": "thread.started", "thread_id": thread_id}
        (request,) = srv.requests
        assert (request["prompt"], request["step"]) == ("And now?", 0)
        sent = json.dumps(request["body"]["input"])
        assert "Create hello.txt" in sent
        assert "custom_tool_call_output" in sent


def test_real_codex_turn_fails_on_http_500(tmp_path: Path) -> None:
    """A scripted HTTP 500 ends codex's turn as failed (no retries configured)."""
    workspace = tmp_path / "ws"
    workspace.mkdir()
    with ScriptedModelServer(CODEX_SCRIPT) as srv:
        code, events = _codex(_codex_home(tmp_path, srv.url), workspace, "fail please")
        assert code != 0
        assert events[-1]["type"] == "turn.failed"
        assert events[-1]["error"]["message"]
        assert [r["status"] for r in srv.requests] == [500]


def test_example_script_writes_hello_with_either_agent(tmp_path: Path) -> None:
    """examples/scripted-model.json: Claude gets a Write, codex an apply_patch (it ran for real)."""
    load_script(EXAMPLE)
    workspace = tmp_path / "ws"
    workspace.mkdir()
    with ScriptedModelServer(EXAMPLE) as srv:
        reminder = (
            f"<system-reminder>\n - Primary working directory: {workspace}\n</system-reminder>"
        )
        with httpx.Client(base_url=srv.url) as client:
            prompt = [{"type": "text", "text": reminder}, {"type": "text", "text": "hi"}]
            answer = _messages(client, [{"role": "user", "content": prompt}]).json()
        assert answer["content"][1]["name"] == "Write"
        assert answer["content"][1]["input"]["file_path"] == f"{workspace}/hello.txt"
        code, events = _codex(_codex_home(tmp_path, srv.url), workspace, "Say hello")
        assert code == 0, events
        assert (workspace / "hello.txt").read_text() == "Hello from the scripted model!\n"
        assert events[-2]["item"]["text"] == "done: hello.txt is written."


def test_bad_scripts_are_refused_with_the_place_named() -> None:
    """load_script names the offending field."""
    with pytest.raises(ValueError, match=r"scenarios\[0\]\.turns\[1\]\.delay"):
        load_script({"scenarios": [{"turns": [{}, {"delay": -1}]}]})
    with pytest.raises(ValueError, match="scenarios"):
        load_script({"turns": []})


def test_interrupt_marker_and_reminders_are_not_the_prompt() -> None:
    """Claude's "[Request interrupted by user]" and reminders never take part in matching."""
    script = {"scenarios": [{"match": r"^slow one$", "turns": [{"text": "matched"}]}]}
    content = [
        {"type": "text", "text": "<system-reminder>\nctx\n</system-reminder>"},
        {"type": "text", "text": "slow one\n"},
        {"type": "text", "text": "[Request interrupted by user]"},
    ]
    with ScriptedModelServer(script) as srv, httpx.Client(base_url=srv.url) as client:
        answer = _messages(client, [{"role": "user", "content": content}]).json()
    assert answer["content"][0]["text"] == "matched"
    assert srv.requests[0]["prompt"] == "slow one"
