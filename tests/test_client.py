"""``agentyard.client`` against a real server (the real Claude CLI and codex against the
scripted model): every method, every error type, streams that survive dropped connections."""

from __future__ import annotations

import io
import zipfile

import pytest

from agentyard.client import (
    AsyncClient,
    Client,
    Conflict,
    ConnectionFailed,
    Event,
    Forbidden,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    ServerError,
    Unauthorized,
)
from agentyard.client.errors import ApiError, error_for
from agentyard.testing.faults import TcpProxy
from agentyard.testing.harness import API_KEY, free_port
from clientkit import TOKEN, Yard, yard  # noqa: F401 - the module's server fixture


@pytest.fixture
def api(yard: Yard) -> Client:  # noqa: F811
    return Client(yard.url, API_KEY)


def test_defaults_come_from_the_environment_then_the_local_admin_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    """AGENTYARD_URL and AGENTYARD_KEY; without a key, ./.agentyard/admin.key."""
    monkeypatch.setenv("AGENTYARD_URL", "http://example.invalid:1/")
    monkeypatch.setenv("AGENTYARD_KEY", "sk-from-env")
    with Client() as c:
        assert c.url == "http://example.invalid:1" and c.key == "sk-from-env"
    monkeypatch.delenv("AGENTYARD_KEY")
    monkeypatch.delenv("AGENTYARD_URL")
    monkeypatch.chdir(str(tmp_path))
    (tmp_path / ".agentyard").mkdir()  # type: ignore[operator]
    (tmp_path / ".agentyard" / "admin.key").write_text("sk-local\n")  # type: ignore[operator]
    with Client() as c:
        assert c.url == "http://127.0.0.1:8080" and c.key == "sk-local"


def test_a_task_from_create_to_wait_with_its_logs_diff_status_and_listing(api: Client) -> None:
    created = api.create_task("write hello please", agent="claude", title="Hello")
    assert created.status == "queued" and created.agent_count == 1
    task = api.wait(created.run_id, timeout=90)
    assert task.status == "completed" and task.title == "Hello"
    assert task.cost_usd is not None and task.cost_usd > 0
    assert [m.role for m in task.messages] == ["user", "assistant"]
    assert task.diff_stats is not None and task.diff_stats.files_changed == 1
    assert api.status(created.run_id).progress == 100
    diff = api.diff(created.run_id)
    assert "+hello" in diff.diff and diff.diff_stats is not None
    logs = api.logs(created.run_id)
    events = logs.typed_events()
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[-1].type == "finish" and logs.event_count == len(events)
    assert all(e.type != "text-delta" for e in api.logs(created.run_id, False).typed_events())
    # A finished run's stream replays exactly the stored events, then ends.
    assert list(api.stream(created.run_id)) == events
    assert [e.seq for e in api.stream(created.run_id, after=3)] == [e.seq for e in events[3:]]
    assert list(api.stream(created.run_id, after=events[-1].seq)) == []  # the 204
    assert list(api.stream(created.run_id, raw=True)) == events
    listed = api.list_tasks(status="completed", limit=100)
    assert created.run_id in {t.run_id for t in listed.tasks}
    assert api.raw_status(created.run_id).status == "completed"
    assert api.raw_status("run_unknown").status is None
    renamed = api.rename(created.run_id, "Bonjour")
    assert renamed.success and api.get_task(created.run_id).title == "Bonjour"
    again = api.cancel(created.run_id)
    assert again.success is False and again.status == "completed"


def test_stream_resumes_after_dropped_connections_losing_and_repeating_nothing(
    yard: Yard,  # noqa: F811
) -> None:
    """The connection is cut twice mid-run; the stream reconnects with Last-Event-ID and
    yields exactly the stored events, each once, ending at finish."""
    with TcpProxy("127.0.0.1", yard.server.port) as proxy, Client(proxy.http_url, API_KEY) as c:
        run_id = c.create_task("stepwise please").run_id
        got: list[Event] = []
        for event in c.stream(run_id):
            got.append(event)
            if len(got) in (2, 5):
                assert proxy.drop() >= 1
        assert proxy.drops == 2
        stored = c.logs(run_id).typed_events()
    assert got == stored and got[-1].type == "finish"
    assert got[-1].data["status"] == "completed"


def test_continue_of_an_active_run_waits_and_cancel(api: Client) -> None:
    slow = api.create_task("slow thinking").run_id
    queued = api.continue_task(slow, "write hello after the slow one")
    assert queued.previous_run_id == slow and queued.status == "queued"
    result = api.cancel(slow)
    assert result.success and result.status == "cancelled"
    assert api.wait(slow, timeout=30).status == "cancelled"
    # Continuing from any run of the chat adds to its end.
    follow = api.continue_task(slow, "write hello once more")
    assert follow.previous_run_id == queued.run_id
    assert api.wait(queued.run_id, timeout=90).status == "completed"
    assert api.wait(follow.run_id, timeout=90).status == "completed"
    with pytest.raises(TimeoutError):
        api.wait(api.create_task("slow again").run_id, timeout=0.2, poll=0.05)


def test_files_list_write_read_delete_upload_download(api: Client) -> None:
    run_id = api.create_task("write hello for files").run_id
    api.wait(run_id, timeout=90)
    assert "hello.txt" in {f.path for f in api.list_files(run_id).files}
    assert api.read_file(run_id, "hello.txt").content == "hello\n"
    assert api.write_file(run_id, "docs/a.txt", "text\n").success
    assert api.write_file(run_id, "docs/b.bin", b"\x00\xff").size == 2
    binary = api.read_file(run_id, "docs/b.bin")
    assert binary.encoding == "base64" and binary.content == "AP8="
    listed = api.list_files(run_id, "docs", recursive=True)
    assert [f.path for f in listed.files] == ["docs/a.txt", "docs/b.bin"]
    uploaded = api.upload(run_id, {"up.txt": b"up"}, directory="docs")
    assert [u.path for u in uploaded.uploaded] == ["docs/up.txt"]
    assert api.delete_file(run_id, "docs/a.txt").success
    with pytest.raises(NotFound):
        api.read_file(run_id, "docs/a.txt")
    archive = zipfile.ZipFile(io.BytesIO(api.download(run_id)))
    assert {"hello.txt", "docs/b.bin", "docs/up.txt"} <= set(archive.namelist())
    with pytest.raises(InvalidInput):
        api.list_files(run_id, "hello.txt")


def test_a_two_agent_group_compare_select_and_cancel(api: Client) -> None:
    created = api.create_task("write hello together", agents=["claude", "codex:gpt-5.5"])
    assert created.runs is not None and [r.agent for r in created.runs] == ["claude", "codex"]
    for ref in created.runs:
        assert api.wait(ref.run_id, timeout=120).status == "completed"
    group = api.group(created.task_id)
    assert group.status == "completed" and group.agent_count == 2
    comparison = api.compare(created.task_id)
    assert [f.path for f in comparison.files] == ["hello.txt"]
    assert all(r.files_changed == 1 for r in comparison.runs)
    chosen = api.select(created.task_id, created.runs[1].run_id)
    assert chosen.selected_run_id == created.runs[1].run_id
    with pytest.raises(Conflict):
        api.select(created.task_id, created.runs[0].run_id)
    assert api.cancel_group(created.task_id).status == "completed"
    with pytest.raises(InvalidInput):
        api.create_task("alone", agents=["claude"])


def test_git_connection_and_agents(api: Client) -> None:
    assert api.git_config().connected is False
    assert api.git_status().connected is False
    with pytest.raises(InvalidInput) as bad:
        api.git_connect("ghp_notAKnownToken")
    assert "GitHub rejected the token" in bad.value.message
    assert api.git_connect(TOKEN).login == "octocat"
    account = api.git_config()
    assert account.connected and account.login == "octocat"
    assert api.git_status().token_valid is True
    assert [r["name"] for r in api.git_repos().repos] == ["arena"]
    branches = api.git_branches("octocat", "arena")
    assert branches.default_branch == "main" and branches.total == 1
    assert api.git_disconnect().success and api.git_config().connected is False
    agents = {a.agent: a for a in api.agents().agents}
    assert agents["claude"].configured and agents["codex"].default_model == "gpt-5.5"
    assert api.health().ok


def test_every_error_type_carries_the_servers_message(yard: Yard, api: Client) -> None:  # noqa: F811
    with pytest.raises(NotFound) as missing:
        api.get_task("run_does_not_exist")
    assert missing.value.status == 404 and "not found" in missing.value.message
    with pytest.raises(InvalidInput) as invalid:
        api.create_task("  ")
    assert invalid.value.message == "'message' or 'prompt' is required"
    with pytest.raises(InvalidInput):
        api.list_tasks(status="sleeping")
    with pytest.raises(PayloadTooLarge):
        api.create_task("x" * 1_100_000)
    with Client(yard.url, "sk-wrong") as stranger, pytest.raises(Unauthorized):
        stranger.agents()
    run_id = api.create_task("write hello for admin").run_id
    bob = yard.server.cli("keys", "create", "--name", "bob", "--user", "bob").strip()
    with Client(yard.url, bob) as other:
        with pytest.raises(Forbidden):
            other.get_task(run_id)
        with pytest.raises(Forbidden):
            list(other.stream(run_id))
    with (
        Client(f"http://127.0.0.1:{free_port()}", API_KEY) as nowhere,
        pytest.raises(ConnectionFailed),
    ):
        nowhere.agents()
    api.wait(run_id, timeout=90)
    assert isinstance(error_for(502, b"bad gateway"), ServerError)
    teapot = error_for(418, b'{"error": "short and stout"}')
    assert type(teapot) is ApiError and teapot.message == "short and stout"
    assert str(teapot) == "short and stout (HTTP 418)"


async def test_the_async_client_speaks_the_same_api(yard: Yard) -> None:  # noqa: F811
    async with AsyncClient(yard.url, API_KEY) as c:
        created = await c.create_task("write hello async", agent="codex")
        got = [event async for event in c.stream(created.run_id)]
        assert got[-1].type == "finish"
        task = await c.wait(created.run_id, timeout=90)
        assert task.status == "completed" and task.agent == "codex"
        assert got == (await c.logs(created.run_id)).typed_events()
        assert (await c.read_file(created.run_id, "hello.txt")).content == "hello\n"
        assert (await c.agents()).agents
        with pytest.raises(NotFound):
            await c.status("run_nope")


def test_a_stream_gives_up_when_the_server_is_gone_for_good(yard: Yard) -> None:  # noqa: F811
    """No server to resume from: ConnectionFailed, after a bounded number of attempts."""
    with TcpProxy("127.0.0.1", yard.server.port) as proxy, Client(proxy.http_url, API_KEY) as c:
        run_id = c.create_task("slow for a lost stream").run_id
        stream = c.stream(run_id, max_reconnects=2)
        assert next(stream).seq == 1
        proxy.close()  # refuses new connections, cuts the open ones
        with pytest.raises(ConnectionFailed):
            for _ in stream:
                pass
    assert api_cancel(yard, run_id)


def api_cancel(yard: Yard, run_id: str) -> bool:  # noqa: F811
    with Client(yard.url, API_KEY) as c:
        return c.cancel(run_id).success
