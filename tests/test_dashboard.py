"""The web dashboard in a real browser: headless Chromium (Debian's ``chromium``) driven by
Playwright, against the whole server in this process on a real port, with the Claude CLI
talking to the scripted model server and command agents for the rest.

One browser for the module, a fresh context (cookies) per test; each test leaves a screenshot
of its final page in its temporary directory.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from agentyard.settings import Settings
from agentyard.testing.faults import TcpProxy
from agentyard.testing.harness import API_KEY
from agentyard.testing.inprocess import InProcessServer
from agentyard.testing.scripted_model import ScriptedModelServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FLOOD_LINES = 5000
SIGN_IN_PAGE = re.compile(r"/signin(\?next=.*)?$")

SCRIPT: dict[str, Any] = {
    "scenarios": [
        {
            "match": "^explain",
            "turns": [
                {
                    "text": "Looking at the **workspace** first.",
                    "tool_calls": [{"name": "Bash", "input": {"command": "echo from-bash"}}],
                },
                # The slow step: the first words are on the page while the run goes on.
                {"delay": 3, "text": "All done: nothing to change."},
            ],
        },
        {
            "match": "^slow",
            "turns": [
                {"text": "Starting.", "tool_calls": [{"name": "Bash", "input": {"command": ":"}}]},
                {"delay": 120, "text": "late"},
            ],
        },
        {"turns": [{"text": "ok"}]},
    ]
}

COMMANDS = {
    "echo": {"argv": ["sh", "-c", 'echo "answer: $AGENTYARD_PROMPT"']},
    # Each speaks, then works a little: the columns are live while they run.
    "alpha": {"argv": ["sh", "-c", "echo alpha speaks; sleep 2; printf 'a\\nb\\n' > shared.txt"]},
    "beta": {"argv": ["sh", "-c", "echo beta speaks; sleep 2; printf 'a\\nc\\n' > shared.txt"]},
    "flood": {"argv": ["sh", "-c", f"seq 1 {FLOOD_LINES}; sleep 120"]},
    "wait": {"argv": ["sh", "-c", "echo waiting; sleep 120"]},
    "say": {"argv": ["sh", "-c", 'echo "$AGENTYARD_PROMPT"; sleep 120']},
    "drip": {
        "argv": [
            "sh",
            "-c",
            "for i in 1 2 3 4 5; do echo line-$i; done; sleep 1; "
            "for i in 6 7 8 9 10; do echo line-$i; done; echo the-end; sleep 120",
        ]
    },
}


@pytest.fixture(scope="module")
def model() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer(SCRIPT) as server:
        yield server


@pytest.fixture(scope="module")
def yard(
    tmp_path_factory: pytest.TempPathFactory, model: ScriptedModelServer
) -> Iterator[InProcessServer]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("yard"),
        api_key=API_KEY,
        commands=json.dumps(COMMANDS),
        claude_env={"CLAUDE_CODE_MAX_RETRIES": "0"},
        max_concurrent_runs=4,
        keepalive_seconds=1,
        queue_poll_seconds=0.2,
        cancel_wait_seconds=5,
        **{"ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": "sk-ant-scripted"},
    )
    server = InProcessServer(settings).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(
            f"{CHROMIUM} is missing: the dashboard tests need Debian's chromium "
            "(apt-get install chromium; `make browser` and .ci/run install it)"
        )
    with sync_playwright() as p:
        found = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield found
        found.close()


@pytest.fixture
def page(browser: Browser, yard: InProcessServer, tmp_path: Path) -> Iterator[Page]:
    context = browser.new_context(base_url=yard.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    tab = context.new_page()
    errors = console_errors(tab)
    yield tab
    # The whole page, unless it is thousands of lines long (that would take seconds).
    whole = tab.evaluate("document.documentElement.scrollHeight") < 5000
    tab.screenshot(path=str(tmp_path / "final.png"), full_page=whole)
    context.close()
    assert not errors, errors


@pytest.fixture
def api(yard: InProcessServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=yard.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30
    ) as client:
        yield client


def console_errors(tab: Page) -> list[str]:
    """Script errors and CSP refusals (an error status of a page is not one: a wrong key's
    sign-in page answers 401 on purpose)."""
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on(
        "console",
        lambda m: (
            errors.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    return errors


def sign_in(page: Page, key: str = API_KEY) -> None:
    page.goto("/")
    expect(page).to_have_url(SIGN_IN_PAGE)
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="New task")).to_be_visible()


def start_task(page: Page, prompt: str, *agents: tuple[str, str]) -> None:
    page.get_by_label("Prompt").fill(prompt)
    if len(agents) > 1:
        page.get_by_text("More agents").click()
    for i, (agent, model) in enumerate(agents, start=1):
        page.get_by_label(f"Agent {i}", exact=True).select_option(agent)
        page.get_by_label(f"Model {i}", exact=True).fill(model)
    page.get_by_role("button", name="Start").click()


def unlabelled_controls(page: Page) -> list[str]:
    """Form controls without an accessible name (label, aria-label(ledby), or text)."""
    found: list[str] = page.evaluate(
        """() => [...document.querySelectorAll('input, textarea, select, button')]
            .filter(e => e.type !== 'hidden')
            .filter(e => !((e.labels && e.labels.length) || e.getAttribute('aria-label')
                || e.getAttribute('aria-labelledby')
                || (e.tagName === 'BUTTON' && e.textContent.trim())))
            .map(e => e.outerHTML)"""
    )
    return found


def run_id_of(page: Page) -> str:
    return page.url.rstrip("/").rsplit("/", 1)[1]


def test_sign_in_refuses_a_wrong_key_and_every_control_has_a_label(page: Page) -> None:
    page.goto("/signin")
    page.get_by_label("API key").fill("sk-ay-not-a-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not valid")
    assert unlabelled_controls(page) == []
    sign_in(page)
    assert unlabelled_controls(page) == []
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["ay_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict" and session["expires"] > 0
    assert API_KEY not in session["value"]
    page.goto("/settings")
    assert unlabelled_controls(page) == []


def test_a_task_streams_its_text_while_it_runs(page: Page, api: httpx.Client) -> None:
    """The form starts a Claude task; its first words and tool call show while it runs (the
    model's next step is slow), then the final answer, rendered as markdown, and the cost."""
    sign_in(page)
    start_task(page, "explain the workspace", ("claude", ""))
    expect(page).to_have_url(re.compile(r"/tasks/[0-9a-f-]{36}$"))
    run_id = run_id_of(page)
    expect(page.locator(".conversation")).to_contain_text("Looking at the workspace first.")
    # Live: the text is there (its block formatted once it ended) and the run still going.
    expect(page.locator(".conversation .formatted strong")).to_have_text("workspace")
    expect(page.locator("[data-role=status]")).to_have_text("running")
    assert api.get(f"/api/v1/tasks/{run_id}/status").json()["status"] == "running"
    expect(page.locator(".tool .tool-name").first).to_have_text("Bash")
    expect(page.locator(".conversation")).to_contain_text("All done: nothing to change.")
    expect(page.locator("[data-role=status]")).to_have_text("completed")
    # The finished run is the server's rendering of its events: markdown, the tool call.
    expect(page.locator(".conversation .md strong")).to_have_text("workspace")
    expect(page.locator(".tool .tool-name")).to_have_text(["Bash"])
    expect(page.get_by_label("Follow-up")).to_be_visible()
    assert unlabelled_controls(page) == []


def test_cancel_a_running_task(page: Page, api: httpx.Client) -> None:
    sign_in(page)
    start_task(page, "slow work please", ("claude", ""))
    run_id = run_id_of(page)
    expect(page.locator(".conversation")).to_contain_text("Starting.")
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("[data-role=status]")).to_have_text("cancelled")
    assert api.get(f"/api/v1/tasks/{run_id}/status").json()["status"] == "cancelled"
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)


def test_a_follow_up_continues_the_chat(page: Page, api: httpx.Client) -> None:
    sign_in(page)
    start_task(page, "first question", ("command", "echo"))
    first = run_id_of(page)
    expect(page.locator(".conversation")).to_contain_text("answer: first question")
    page.get_by_label("Follow-up").fill("second question")
    page.get_by_role("button", name="Send").click()
    expect(page).not_to_have_url(f"/tasks/{first}")
    second = run_id_of(page)
    expect(page.locator(".panel .conversation")).to_contain_text("answer: second question")
    expect(page.locator("[data-role=status]")).to_have_text("completed")
    expect(page.locator("h1.title")).to_have_text("first question")  # the chat's start
    # The chat's earlier run is above.
    expect(page.locator(".earlier")).to_contain_text("answer: first question")
    assert api.get(f"/api/v1/tasks/{second}").json()["previousRunId"] == first


def test_two_agents_side_by_side_and_select_the_winner(page: Page, api: httpx.Client) -> None:
    sign_in(page)
    start_task(page, "compare us", ("command", "alpha"), ("command", "beta"))
    expect(page).to_have_url(re.compile(r"/groups/[0-9a-f-]{36}$"))
    group_id = run_id_of(page)
    columns = page.locator("article.column")
    expect(columns).to_have_count(2)
    # Both live at once, on the group's one stream.
    for i, name in enumerate(("alpha", "beta")):
        expect(columns.nth(i).locator(".conversation .text")).to_contain_text(f"{name} speaks")
        expect(columns.nth(i).locator("[data-role=status]")).to_have_text("running")
    for i in range(2):
        expect(columns.nth(i).locator("[data-role=status]")).to_have_text("completed")
    expect(page.locator("#compare table.compare")).to_contain_text("shared.txt")
    expect(page.locator("[data-role=group-status]")).to_have_text("completed")
    assert unlabelled_controls(page) == []
    beta = api.get(f"/api/v1/groups/{group_id}").json()["runs"][1]["runId"]
    columns.nth(1).get_by_role("button", name="Select").click()
    expect(page.locator("article.column.winner")).to_have_count(1)
    expect(page.locator("article.column.winner")).to_contain_text("beta speaks")
    assert api.get(f"/api/v1/groups/{group_id}").json()["selectedRunId"] == beta
    expect(page.get_by_role("button", name="Select")).to_have_count(0)
    # The per-file comparison: each run's part of the diff, side by side.
    page.get_by_text("shared.txt side by side").click()
    cells = page.locator("#compare .compare-cell")
    expect(cells).to_have_count(2)
    expect(cells.nth(0).locator("td.code.add")).to_have_text(["a", "b"])
    expect(cells.nth(1).locator("td.code.add")).to_have_text(["a", "c"])


def test_another_users_run_is_not_reachable(
    page: Page, yard: InProcessServer, api: httpx.Client
) -> None:
    _, bob_key = yard.call(lambda: yard.yard.keys.create("bob", "bob's laptop"))
    with httpx.Client(
        base_url=yard.url, headers={"Authorization": f"Bearer {bob_key}"}, timeout=30
    ) as bob:
        created = bob.post(
            "/api/v1/tasks", json={"prompt": "bob's secret plan", "agent": "command"}
        )
        assert created.status_code == 200, created.text
        bob_run = created.json()["runId"]
        group = bob.post(
            "/api/v1/tasks",
            json={
                "prompt": "bob's secret plan, twice",
                "selectedAgents": [{"agent": "command", "model": m} for m in ("echo", "echo")],
            },
        )
        assert group.status_code == 200, group.text
        bob_group = group.json()["groupId"]
    sign_in(page)  # as admin
    response = page.goto(f"/tasks/{bob_run}")
    assert response is not None and response.status in (403, 404)
    expect(page.locator("body")).not_to_contain_text("bob's secret plan")
    for path in (
        f"/ui/tasks/{bob_run}/stream",
        f"/ui/tasks/{bob_run}/panel",
        f"/ui/tasks/{bob_run}/diff",
        f"/tasks/{bob_run}/files",
        f"/groups/{bob_group}",
        f"/ui/groups/{bob_group}/compare",
    ):
        answer = page.request.get(path)
        assert answer.status in (403, 404) and "secret plan" not in answer.text()
    page.goto("/")
    expect(page.locator("#rows")).not_to_contain_text("bob's secret plan")
    # The JSON API stays bearer-only: the session cookie does not open it.
    assert page.request.get("/api/v1/tasks").status == 401


def test_signing_in_goes_back_to_the_page_asked_for(page: Page) -> None:
    page.goto("/settings")
    expect(page).to_have_url(re.compile(r"/signin\?next=%2Fsettings$"))
    page.get_by_label("API key").fill(API_KEY)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url("/settings")
    page.context.clear_cookies()
    for elsewhere in ("//example.com/x", "https://example.com/", "/\\example.com"):
        page.goto(f"/signin?next={elsewhere}")
        page.get_by_label("API key").fill(API_KEY)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="New task")).to_be_visible()
        expect(page).to_have_url(re.compile(r"^http://127\.0\.0\.1:\d+/$"))  # not elsewhere
        page.context.clear_cookies()


def test_sign_out_ends_the_session_and_a_revoked_key_too(page: Page, yard: InProcessServer) -> None:
    sign_in(page)
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(SIGN_IN_PAGE)
    page.goto("/settings")
    expect(page).to_have_url(SIGN_IN_PAGE)
    assert page.request.get("/ui/tasks/rows").status == 401

    # A key made on the settings page signs in; revoking it ends that session.
    sign_in(page)
    page.goto("/settings")
    page.get_by_label("Key name").fill("phone")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("[data-role=new-key]").inner_text()
    assert secret.startswith("sk-ay-")
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, secret)
    page.goto("/settings")
    page.get_by_role("button", name="Revoke key phone").click()
    expect(page).to_have_url(SIGN_IN_PAGE)
    page.goto("/")
    expect(page).to_have_url(SIGN_IN_PAGE)


def test_a_form_post_without_the_csrf_token_is_refused(
    page: Page, yard: InProcessServer, api: httpx.Client
) -> None:
    sign_in(page)
    before = len(api.get("/api/v1/tasks?limit=100").json()["tasks"])
    forged = page.request.post("/tasks", form={"prompt": "forged", "agent1": "command"})
    assert forged.status == 403
    wrong = page.request.post(
        "/tasks", form={"prompt": "forged", "agent1": "command", "csrf": "x" * 43}
    )
    assert wrong.status == 403
    assert len(api.get("/api/v1/tasks?limit=100").json()["tasks"]) == before
    page.goto("/")  # the final page of this test's screenshot


def test_the_page_keeps_up_with_a_run_streaming_thousands_of_events(
    page: Page, api: httpx.Client
) -> None:
    """5,000 output lines: each is appended to one text node (no re-render per event) and
    the event counter reaches the total while the run is still going."""
    sign_in(page)
    start_task(page, "flood", ("command", "flood"))
    run_id = run_id_of(page)
    first_block = page.locator(".conversation .text.live").first
    expect(first_block).to_contain_text("1")
    block = first_block.element_handle()
    total = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        logs = api.get(f"/api/v1/tasks/{run_id}/logs").json()
        total = max((e["seq"] for e in logs["events"]), default=0)
        if logs["eventCount"] >= FLOOD_LINES + 2:  # start, text-start, a delta per line
            break
        time.sleep(0.2)
    assert total >= FLOOD_LINES + 2
    expect(page.locator("[data-role=count]")).to_have_text(str(total), timeout=30_000)
    live = page.locator(".conversation .text.live")
    assert live.count() == 1
    # The block seen at the start is the one still on the page: appended to, not redrawn.
    assert block.evaluate("e => e.isConnected && e.textContent.length > 20000")
    assert live.evaluate("e => e.textContent").endswith(f"\n{FLOOD_LINES - 1}\n{FLOOD_LINES}\n")
    # Still responsive: the Cancel button works at once.
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("[data-role=status]")).to_have_text("cancelled")


def test_the_live_view_resumes_after_a_dropped_connection(
    browser: Browser, yard: InProcessServer, api: httpx.Client, tmp_path: Path
) -> None:
    """The stream is cut mid-run: EventSource reconnects with Last-Event-ID and the text goes
    on where it stopped, nothing lost and nothing twice."""
    with TcpProxy("127.0.0.1", yard.port) as proxy:
        context = browser.new_context(base_url=proxy.http_url)
        context.set_default_timeout(20_000)
        page = context.new_page()
        errors = console_errors(page)
        sign_in(page)
        start_task(page, "drip", ("command", "drip"))
        run_id = run_id_of(page)
        live = page.locator(".conversation .text.live")
        expect(live).to_contain_text("line-5")
        assert proxy.drop() > 0
        expect(live).to_contain_text("the-end")
        expected = "".join(f"line-{i}\n" for i in range(1, 11)) + "the-end\n"
        assert live.evaluate("e => e.textContent") == expected
        assert api.get(f"/api/v1/tasks/{run_id}/status").json()["status"] == "running"
        page.get_by_role("button", name="Cancel").click()
        expect(page.locator("[data-role=status]")).to_have_text("cancelled")
        page.screenshot(path=str(tmp_path / "final.png"), full_page=True)
        context.close()
    # The reconnection itself logs a console error ("net::ERR_..."): only script errors count.
    assert [e for e in errors if "ERR_" not in e] == []


def test_the_tasks_list_follows_its_runs_and_filters_by_status(
    page: Page, api: httpx.Client
) -> None:
    sign_in(page)
    created = api.post(
        "/api/v1/tasks", json={"prompt": "a list entry", "agent": "command", "model": "wait"}
    )
    run_id = created.json()["runId"]
    page.goto("/")
    row = page.locator(f"li.task[data-run='{run_id}']")
    expect(row.locator(".badge")).to_have_text(re.compile("queued|running"))
    expect(row).to_contain_text("a list entry")
    expect(row).to_contain_text("command · wait")
    assert api.patch(f"/api/v1/tasks/{run_id}", json={"action": "cancel"}).status_code == 200
    expect(row.locator(".badge")).to_have_text("cancelled")  # the list refreshes itself
    page.get_by_label("Status").select_option("completed")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator(f"li.task[data-run='{run_id}']")).to_have_count(0)
    page.get_by_label("Status").select_option("cancelled")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator(f"li.task[data-run='{run_id}']")).to_have_count(1)


def test_a_runs_diff_unified_or_side_by_side_and_its_files(page: Page) -> None:
    sign_in(page)
    start_task(page, "write the shared file", ("command", "alpha"))
    expect(page.locator("[data-role=status]")).to_have_text("completed")
    diff = page.locator(".diff")
    expect(diff.locator("details.difffile summary")).to_contain_text("shared.txt")
    expect(diff.locator("table.difftable.unified td.code.add")).to_have_text(["a", "b"])
    page.get_by_role("button", name="Side by side").click()
    expect(page.locator("table.difftable.split td.code.add")).to_have_text(["a", "b"])
    expect(page.get_by_role("button", name="Side by side")).to_have_attribute(
        "aria-pressed", "true"
    )
    page.get_by_role("link", name="Browse files").click()
    page.get_by_role("link", name="shared.txt").click()
    expect(page.locator("pre.file")).to_have_text("a\nb\n")
    expect(page.get_by_role("textbox")).to_have_count(0)  # read-only: nothing to edit


def test_hostile_agent_text_stays_text_live_and_finished(page: Page) -> None:
    """Agent output with HTML in it is shown as text while it streams and once rendered as
    markdown: no element from it, no script run."""
    sign_in(page)
    hostile = (
        "<img src=x onerror=\"document.title='owned'\"> <script>document.title='owned'</script>"
    )
    start_task(page, hostile, ("command", "say"))
    conversation = page.locator(".panel .conversation")
    for state in ("live", "finished"):
        expect(conversation).to_contain_text("<img src=x")
        assert conversation.locator("img, script").count() == 0, state
        assert page.title() != "owned", state
        if state == "live":
            expect(page.locator("[data-role=status]")).to_have_text("running")
            page.get_by_role("button", name="Cancel").click()
            expect(page.locator("[data-role=status]")).to_have_text("cancelled")
    page.goto("/")
    expect(page.locator("#rows")).to_contain_text("<img src=x")
    assert page.locator("#rows img, #rows script").count() == 0
    assert page.title() != "owned"
