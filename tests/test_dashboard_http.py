"""The dashboard without a browser: sessions and CSRF tokens, the API-key use cases on a real
store, safe rendering, and its HTTP answers to bad or hostile requests on a real server."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentyard.accounts import ApiKeys
from agentyard.core.errors import InvalidInput, NotFound
from agentyard.settings import Settings
from agentyard.store.store import Store
from agentyard.testing.fake_github import FakeGitHub
from agentyard.testing.harness import API_KEY, wait_status
from agentyard.testing.inprocess import InProcessServer
from agentyard.web import render
from agentyard.web.install import CSP
from agentyard.web.session import Sessions

# -- sessions and CSRF --------------------------------------------------------------------------


def test_a_session_cookie_is_signed_expires_and_ends_at_sign_out() -> None:
    jar = Sessions(b"k" * 32, 3600)
    cookie = jar.issue("key_1", now=1000)
    assert jar.read(cookie, now=1001) is not None
    assert jar.read(cookie, now=1000 + 3600) is None  # expired
    assert Sessions(b"x" * 32, 3600).read(cookie, now=1001) is None  # another server's key
    payload, mac = cookie.split(".")
    forged = json.dumps({"k": "key_admin", "e": 9_999_999_999, "n": "0"}).encode()
    forged_payload = base64.urlsafe_b64encode(forged).rstrip(b"=").decode()
    assert jar.read(f"{forged_payload}.{mac}", now=1001) is None
    for junk in ("", ".", "a.b.c", "x" * 5000, payload, f"{payload}."):
        assert jar.read(junk, now=1001) is None
    jar.end(cookie, now=1002)
    assert jar.read(cookie, now=1003) is None
    assert jar.read(jar.issue("key_1", now=1003), now=1004) is not None  # a new sign-in works


def test_a_csrf_token_is_bound_to_the_browser_cookie_and_the_server() -> None:
    jar = Sessions(b"k" * 32, 3600)
    cookie = jar.new_csrf_cookie()
    token = jar.csrf_token(cookie)
    assert jar.csrf_ok(cookie, token)
    assert not jar.csrf_ok(jar.new_csrf_cookie(), token)
    assert not jar.csrf_ok(cookie, None) and not jar.csrf_ok(None, token)
    assert not Sessions(b"x" * 32, 3600).csrf_ok(cookie, token)


# -- API keys -----------------------------------------------------------------------------------


async def test_api_keys_are_created_listed_and_revoked_by_their_owner_only(store: Store) -> None:
    keys = ApiKeys(store, "sk-ay-env", "admin")
    key_id, secret = await keys.create("alice", "laptop")
    holder = await keys.identify(secret)
    assert holder is not None and (holder.key_id, holder.user_id) == (key_id, "alice")
    assert await keys.user_of(key_id) == "alice"
    listed = await keys.list("alice")
    assert [k["name"] for k in listed] == ["laptop"] and secret not in json.dumps(listed)
    assert await keys.list("bob") == []
    with pytest.raises(NotFound):
        await keys.revoke("bob", key_id)
    assert await keys.user_of(key_id) == "alice"
    await keys.revoke("alice", key_id)
    assert await keys.user_of(key_id) is None and await keys.identify(secret) is None
    with pytest.raises(NotFound):
        await keys.revoke("alice", key_id)
    with pytest.raises(InvalidInput):
        await keys.create("alice", " ")
    env = await keys.identify("sk-ay-env")
    assert env is not None and env.user_id == "admin"
    assert await keys.user_of(env.key_id) == "admin"
    # Another AGENTYARD_API_KEY: sessions of the old one end.
    assert await ApiKeys(store, "sk-ay-other", "admin").user_of(env.key_id) is None
    with pytest.raises(InvalidInput):
        await keys.revoke("admin", env.key_id)


# -- rendering ----------------------------------------------------------------------------------


def test_agent_markdown_cannot_inject_html_or_script_links() -> None:
    html = str(
        render.markdown(
            '<img src=x onerror="alert(1)"> <script>alert(2)</script> '
            "[click](javascript:alert(3)) [ok](https://example.com) **bold**"
        )
    )
    assert "<img" not in html and "<script" not in html
    assert 'href="javascript:' not in html
    assert '<a href="https://example.com">ok</a>' in html and "<strong>bold</strong>" in html


def test_a_finished_runs_conversation_keeps_text_reasoning_and_tools_in_order() -> None:
    events = [
        {"type": "start"},
        {"type": "reasoning-start", "id": "r"},
        {"type": "reasoning-delta", "id": "r", "delta": "think"},
        {"type": "text-start", "id": "t"},
        {"type": "text-delta", "id": "t", "delta": "Hel"},
        {"type": "text-delta", "id": "t", "delta": "lo"},
        {"type": "tool-call-start", "toolCallId": "c", "toolName": "Bash"},
        {"type": "tool-input-available", "toolCallId": "c", "input": {"command": "ls"}},
        {"type": "tool-output-available", "toolCallId": "c", "output": {"output": "a.txt"}},
        {"type": "text-start", "id": "empty"},
        {"type": "finish"},
    ]
    assert render.conversation(events) == [
        {"kind": "reasoning", "text": "think"},
        {"kind": "text", "text": "Hello"},
        {"kind": "tool", "name": "Bash", "input": {"command": "ls"}, "output": {"output": "a.txt"}},
    ]


def test_a_diff_is_parsed_with_line_numbers_and_side_by_side_rows() -> None:
    diff = (
        "diff --git a/app.py b/app.py\n--- a/app.py\n+++ b/app.py\n"
        "@@ -1,3 +1,3 @@\n x = 1\n-y = '<b>'\n+y = 3\n z = 0\n"
    )
    [file] = render.parse_diff(diff)
    assert (file.path, file.added, file.removed) == ("app.py", 1, 1)
    assert [(line.kind, line.old, line.new) for line in file.lines] == [
        ("hunk", None, None),
        ("ctx", 1, 1),
        ("del", 2, None),
        ("add", None, 2),
        ("ctx", 3, 3),
    ]
    assert "&lt;b&gt;" in str(file.lines[2].html)  # code is escaped, then coloured
    pairs = [(r.left and r.left.kind, r.right and r.right.kind) for r in file.rows]
    assert pairs == [(None, None), ("ctx", "ctx"), ("del", "add"), ("ctx", "ctx")]


# -- over HTTP ----------------------------------------------------------------------------------


GITHUB_TOKEN = "ghp_dashboardtesttoken0123456789"


@pytest.fixture(scope="module")
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as gh:
        gh.add_user(GITHUB_TOKEN, "octo", "Octo Cat")
        yield gh


@pytest.fixture(scope="module")
def yard(tmp_path_factory: pytest.TempPathFactory, github: FakeGitHub) -> Iterator[InProcessServer]:
    script = "echo wrote; echo hi > note.txt; echo '<script>alert(1)</script>' > page.html"
    commands = {"write": {"argv": ["sh", "-c", script]}}
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("yard"),
        api_key=API_KEY,
        github_api_url=github.url,
        commands=json.dumps(commands),
        queue_poll_seconds=0.2,
        keepalive_seconds=1,
    )
    server = InProcessServer(settings).start()
    yield server
    server.stop()


@pytest.fixture
def api(yard: InProcessServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=yard.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30
    ) as client:
        yield client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


@contextmanager
def signed_in(yard: InProcessServer, key: str = API_KEY) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=yard.url, timeout=30) as client:
        token = csrf_of(client.get("/signin").text)
        answer = client.post("/signin", data={"csrf": token, "apiKey": key})
        assert answer.status_code == 303, answer.text
        yield client


def test_pages_carry_a_strict_csp_and_the_api_does_not_take_the_cookie(
    yard: InProcessServer,
) -> None:
    with signed_in(yard) as browser:
        page = browser.get("/")
        assert page.status_code == 200
        assert page.headers["content-security-policy"] == CSP
        assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
        assert page.headers["x-frame-options"] == "DENY"
        assert "<script>" not in page.text and " on" + "click=" not in page.text
        api_answer = browser.get("/api/v1/tasks")
        assert api_answer.status_code == 401
        assert "content-security-policy" not in api_answer.headers
        assert (
            browser.get("/static/htmx.min.js").headers["content-type"].startswith("text/javascript")
        )


def test_a_wrong_key_gets_an_error_and_no_session(yard: InProcessServer) -> None:
    with httpx.Client(base_url=yard.url, timeout=30) as client:
        token = csrf_of(client.get("/signin").text)
        answer = client.post("/signin", data={"csrf": token, "apiKey": "sk-ay-wrong"})
        assert answer.status_code == 401 and "not valid" in answer.text
        assert "ay_session" not in answer.cookies
        assert client.get("/").status_code == 303
        away = client.get("/signin", params={"next": "//example.com"})
        assert away.status_code == 200 and "example.com" not in away.text


def test_the_session_cookie_is_secure_over_https(yard: InProcessServer) -> None:
    """Behind a TLS-terminating proxy on the same host (uvicorn trusts its X-Forwarded-Proto)
    the cookies are marked Secure; over plain http they cannot be."""
    https = {"X-Forwarded-Proto": "https"}
    with httpx.Client(base_url=yard.url, headers=https, timeout=30) as client:
        form = client.get("/signin")
        assert "Secure" in form.headers["set-cookie"]
        # The client keeps a Secure cookie off plain http: hand it over as the proxy would.
        cookie = f"ay_csrf={form.cookies['ay_csrf']}"
        answer = client.post(
            "/signin",
            data={"csrf": csrf_of(form.text), "apiKey": API_KEY},
            headers={"Cookie": cookie},
        )
        cookies = answer.headers.get_list("set-cookie")
        session = next(c for c in cookies if c.startswith("ay_session="))
        assert "Secure" in session and "HttpOnly" in session and "SameSite=strict" in session
    with httpx.Client(base_url=yard.url, timeout=30) as client:
        token = csrf_of(client.get("/signin").text)
        answer = client.post("/signin", data={"csrf": token, "apiKey": API_KEY})
        session = next(
            c for c in answer.headers.get_list("set-cookie") if c.startswith("ay_session=")
        )
        assert "Secure" not in session


def test_a_signed_out_cookie_replayed_is_refused(yard: InProcessServer) -> None:
    with signed_in(yard) as browser:
        cookie = browser.cookies["ay_session"]
        token = csrf_of(browser.get("/").text)
        assert browser.post("/signout", data={"csrf": token}).status_code == 303
    with httpx.Client(base_url=yard.url, cookies={"ay_session": cookie}, timeout=30) as replay:
        answer = replay.get("/")
        assert answer.status_code == 303 and answer.headers["location"].startswith("/signin")


def test_bad_form_input_is_a_4xx_page_and_changes_nothing(
    yard: InProcessServer, api: httpx.Client
) -> None:
    before = len(api.get("/api/v1/tasks?limit=100").json()["tasks"])
    with signed_in(yard) as browser:
        token = csrf_of(browser.get("/").text)
        cases = [
            {"prompt": "", "agent1": "command"},
            {"prompt": "x\x00y", "agent1": "command"},
            {"prompt": "ok", "agent1": "no-such-agent"},
            {"prompt": "ok", "agent1": "command", "branch": "bad..branch"},
            {"prompt": "ok", "agent1": "command", "agent2": "command"} | {"pullRequest": "on"},
        ]
        for case in cases:
            answer = browser.post("/tasks", data={"csrf": token, **case})
            assert 400 <= answer.status_code < 500, (case, answer.status_code)
            assert 'role="alert"' in answer.text
        assert browser.get("/?status=nonsense").status_code == 400
        assert browser.get("/tasks/not-a-run").status_code == 404
        assert browser.get("/ui/tasks/not-a-run/diff?view=weird").status_code in (400, 404)
        other = browser.post("/settings/keys/key_nothere/revoke", data={"csrf": token})
        assert other.status_code == 404
    assert len(api.get("/api/v1/tasks?limit=100").json()["tasks"]) == before


def test_forms_cannot_act_on_another_users_run(yard: InProcessServer) -> None:
    _, bob_key = yard.call(lambda: yard.yard.keys.create("bob", "bob's key"))
    with httpx.Client(
        base_url=yard.url, headers={"Authorization": f"Bearer {bob_key}"}, timeout=30
    ) as bob:
        run_id = bob.post("/api/v1/tasks", json={"prompt": "bob", "agent": "command"}).json()[
            "runId"
        ]
        wait_status(bob, run_id, {"completed", "failed"})
        with signed_in(yard) as admin:
            token = csrf_of(admin.get("/").text)
            for action, extra in (("follow-up", {"prompt": "hijack"}), ("cancel", {})):
                answer = admin.post(f"/tasks/{run_id}/{action}", data={"csrf": token, **extra})
                assert answer.status_code == 403, (action, answer.status_code)
            keys = admin.get("/settings").text
            assert "bob&#39;s key" not in keys and "bob's key" not in keys
        assert len(bob.get("/api/v1/tasks").json()["tasks"]) == 1


def test_the_files_browser_is_read_only_and_stays_in_the_workspace(
    yard: InProcessServer, api: httpx.Client
) -> None:
    run_id = api.post("/api/v1/tasks", json={"prompt": "go", "agent": "command"}).json()["runId"]
    assert wait_status(api, run_id, {"completed", "failed"})["status"] == "completed"
    with signed_in(yard) as browser:
        listing = browser.get(f"/tasks/{run_id}/files")
        assert listing.status_code == 200 and "note.txt" in listing.text
        content = browser.get(f"/tasks/{run_id}/files", params={"path": "note.txt"})
        assert content.status_code == 200 and "hi" in content.text
        hostile = browser.get(f"/tasks/{run_id}/files", params={"path": "page.html"}).text
        assert "<script>alert" not in hostile and "&lt;" in hostile
        assert "<script>alert" not in browser.get(f"/ui/tasks/{run_id}/diff").text
        for path in ("../../../etc/passwd", "/etc/passwd", ".git/config", "a\x00b"):
            answer = browser.get(f"/tasks/{run_id}/files", params={"path": path})
            assert answer.status_code in (400, 404), (path, answer.status_code)
            assert "root:" not in answer.text
        page = browser.get(f"/tasks/{run_id}")
        assert "wrote" in page.text
        diff = browser.get(f"/ui/tasks/{run_id}/diff", params={"view": "split"})
        assert diff.status_code == 200 and "note.txt" in diff.text
        # No route writes: a PUT or DELETE on the page is not allowed.
        assert browser.delete(f"/tasks/{run_id}/files").status_code == 405


def test_settings_connect_github_without_ever_showing_the_token(
    yard: InProcessServer, api: httpx.Client
) -> None:
    with signed_in(yard) as browser:
        token = csrf_of(browser.get("/settings").text)
        refused = browser.post("/settings/github", data={"csrf": token, "githubToken": "ghp_wrong"})
        assert refused.status_code == 400 and "GitHub rejected the token" in refused.text
        assert api.get("/api/v1/git/config").json()["connected"] is False
        connected = browser.post(
            "/settings/github", data={"csrf": token, "githubToken": GITHUB_TOKEN}
        )
        assert connected.status_code == 200 and "Connected to GitHub as octo" in connected.text
        page = browser.get("/settings")
        assert "octo" in page.text and "Disconnect GitHub" in page.text
        for html in (connected.text, page.text):
            assert GITHUB_TOKEN not in html
        assert api.get("/api/v1/git/config").json()["login"] == "octo"
        gone = browser.post("/settings/github/disconnect", data={"csrf": token})
        assert gone.status_code == 303
        assert api.get("/api/v1/git/config").json()["connected"] is False


def group_frames(
    client: httpx.Client, path: str, last_id: str | None = None
) -> tuple[int, list[tuple[str, dict[str, Any]]]]:
    """A group stream read to its end: its status and (id, data) frames."""
    headers = {"Last-Event-ID": last_id} if last_id is not None else {}
    frames = []
    with client.stream("GET", path, headers=headers, timeout=30) as response:
        if response.status_code != 200:
            return response.status_code, []
        event_id = ""
        for line in response.iter_lines():
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: "):
                frames.append((event_id, json.loads(line[6:])))
    return 200, frames


def test_a_groups_runs_stream_on_one_connection_and_resume_each(
    yard: InProcessServer, api: httpx.Client
) -> None:
    created = api.post(
        "/api/v1/tasks",
        json={"prompt": "both", "selectedAgents": [{"agent": "command"}, {"agent": "command"}]},
    ).json()
    group_id, runs = created["groupId"], [r["runId"] for r in created["runs"]]
    for run_id in runs:
        wait_status(api, run_id, {"completed", "failed"})
    totals = [len(api.get(f"/api/v1/tasks/{r}/logs").json()["events"]) for r in runs]
    with signed_in(yard) as browser:
        path = f"/ui/groups/{group_id}/stream"
        status, frames = group_frames(browser, path)
        assert status == 200
        assert [data["event"]["type"] for _, data in frames].count("finish") == 2
        assert [sum(1 for _, d in frames if d["run"] == i) for i in (0, 1)] == totals
        assert frames[-1][0] == f"{totals[0]}.{totals[1]}"  # every run's last seq
        # Resume: run 0 after its second event, run 1 from its end.
        status, frames = group_frames(browser, path, f"2.{totals[1]}")
        assert status == 200 and {d["run"] for _, d in frames} == {0}
        assert len(frames) == totals[0] - 2
        status, _ = group_frames(browser, path, f"{totals[0]}.{totals[1]}")
        assert status == 204
        for bad in ("1", "a.b", "1.2.3", "-1.0", f"{2**31}.0"):
            assert browser.get(path, headers={"Last-Event-ID": bad}).status_code == 400
    # The stream's frames are only for the group's owner.
    with httpx.Client(base_url=yard.url, timeout=30) as stranger:
        assert stranger.get(path).status_code == 401


def test_the_templates_and_assets_are_in_the_package() -> None:
    """Hatch's wheel takes every file under src/agentyard (checked with a build): the
    dashboard needs nothing from a CDN or a build step."""
    web = Path(__file__).parent.parent / "src" / "agentyard" / "web"
    for name in ("templates/base.html", "static/htmx.min.js", "static/app.js", "static/app.css"):
        assert (web / name).is_file(), name
    assert "Zero-Clause BSD" in (web / "static/htmx.min.js").read_text()[:400]
