"""Secret redaction (pure) and the parsing of a task's environment variables."""

from __future__ import annotations

import base64
import logging
import random
from typing import Any

import pytest

from agentyard.core import envvars
from agentyard.core import events as ev
from agentyard.core.errors import InvalidInput
from agentyard.core.redaction import (
    MIN_SECRET_LENGTH,
    REDACTED,
    RUNNING,
    DeltaRedactor,
    Redactor,
    SecretRegistry,
)

SECRET = "npm_s3cr3t-T0ken_value"


def test_a_secret_is_redacted_wherever_it_appears_whole() -> None:
    r = Redactor([SECRET, "other-value"])
    text = f"a {SECRET} b {SECRET}{SECRET} and other-value."
    out = r.redact(text)
    assert SECRET not in out and "other-value" not in out
    assert out == f"a {REDACTED} b {REDACTED}{REDACTED} and {REDACTED}."
    assert r.redact("nothing here") == "nothing here"


def test_overlapping_secrets_are_redacted_as_one() -> None:
    r = Redactor(["abcdef", "defghi"])
    assert r.redact("xabcdefghiy") == f"x{REDACTED}y"


def test_values_shorter_than_the_minimum_are_not_redacted() -> None:
    assert MIN_SECRET_LENGTH == 4
    r = Redactor(["abc", "", "abcd"])
    assert r.values == frozenset({"abcd"})
    assert r.redact("abc abcd") == f"abc {REDACTED}"
    none = Redactor(["xyz", ""])
    assert not none
    event = {"type": "text-delta", "id": "t", "delta": "xyz"}
    assert none.redact("xyz") == "xyz" and DeltaRedactor(none).feed(event) == [event]


def _b64(data: bytes, urlsafe: bool) -> str:
    return (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(data).decode()


@pytest.mark.parametrize("urlsafe", [False, True], ids=["standard", "urlsafe"])
@pytest.mark.parametrize("before", range(7))
@pytest.mark.parametrize("after", range(4))
def test_base64_is_redacted_at_every_alignment_in_both_alphabets(
    urlsafe: bool, before: int, after: int
) -> None:
    """The secret embedded anywhere in a longer base64 string: all but the characters that
    mix in neighbouring bytes (at most one each side) is redacted."""
    rng = random.Random(before * 10 + after)
    secret = "s3cr3t/+?>~~value" if urlsafe else SECRET  # bytes that encode to + / - _ too
    head, tail = rng.randbytes(before), rng.randbytes(after)
    encoded = _b64(head + secret.encode() + tail, urlsafe)
    out = Redactor([secret]).redact(f"data: {encoded} end")
    n = len(secret.encode())
    left = encoded[: -(-8 * before // 6)]
    right = encoded[8 * (before + n) // 6 :]
    assert out == f"data: {left}{REDACTED}{right} end"


def test_base64_on_its_own_and_in_a_sentence() -> None:
    r = Redactor([SECRET])
    for encoded in (
        base64.b64encode(SECRET.encode()).decode(),
        base64.b64encode(b"TOKEN=" + SECRET.encode() + b"\n").decode(),
    ):
        out = r.redact(f"echo {encoded} | base64 -d")
        assert REDACTED in out and encoded not in out


def _stream(redactor: Redactor, chunks: list[str], kind: str = ev.TEXT_DELTA) -> list[Any]:
    stream = DeltaRedactor(redactor)
    end = ev.TEXT_END if kind == ev.TEXT_DELTA else ev.REASONING_END
    out: list[Any] = []
    for chunk in chunks:
        out += stream.feed({"type": kind, "id": "b1", "delta": chunk})
    out += stream.feed({"type": end, "id": "b1"})
    assert stream.flush() == []
    return out


def _text(events: list[Any]) -> str:
    return "".join(e["delta"] for e in events if e["type"].endswith("-delta"))


@pytest.mark.parametrize("kind", [ev.TEXT_DELTA, ev.REASONING_DELTA])
def test_a_secret_split_in_two_deltas_at_every_point(kind: str) -> None:
    r = Redactor([SECRET])
    text = f"the token is {SECRET}, keep it"
    for i in range(len(text) + 1):
        events = _stream(r, [text[:i], text[i:]], kind)
        assert _text(events) == r.redact(text) == f"the token is {REDACTED}, keep it"
        assert all(SECRET[:4] not in e.get("delta", "") for e in events)
        assert events[-1] == {"type": kind.replace("-delta", "-end"), "id": "b1"}


def test_a_secret_split_in_three_deltas_and_one_character_each() -> None:
    r = Redactor([SECRET])
    text = f"{SECRET} and {SECRET}!"
    for i in range(len(text) + 1):
        for j in range(i, len(text) + 1):
            assert _text(_stream(r, [text[:i], text[i:j], text[j:]])) == r.redact(text)
    one_each = _stream(r, list(text))
    assert _text(one_each) == f"{REDACTED} and {REDACTED}!"


def test_base64_split_across_deltas() -> None:
    r = Redactor([SECRET])
    text = base64.b64encode(b"x" + SECRET.encode()).decode() + "\n"
    for i in range(len(text) + 1):
        assert _text(_stream(r, [text[:i], text[i:]])) == r.redact(text)
    assert REDACTED in r.redact(text)


def test_only_the_tail_that_could_start_a_secret_is_held_back() -> None:
    """Text that cannot begin a secret goes out at once; a possible start waits."""
    stream = DeltaRedactor(Redactor(["abcdef"]))
    out = stream.feed({"type": "text-delta", "id": "t", "delta": "xyz abc"})
    assert [e["delta"] for e in out] == ["xyz "]
    out = stream.feed({"type": "text-delta", "id": "t", "delta": "dx"})
    assert [e["delta"] for e in out] == ["abcdx"]
    assert stream.feed({"type": "text-delta", "id": "t", "delta": "abcdef"}) == [
        {"type": "text-delta", "id": "t", "delta": REDACTED}
    ]


def test_a_whole_secret_that_a_longer_one_could_extend_waits() -> None:
    r = Redactor(["abcd", "abcdef"])
    for tail, expected in (("ef!", f"{REDACTED}!"), ("zz", f"{REDACTED}zz")):
        assert _text(_stream(r, ["abcd", tail])) == expected


def test_random_texts_and_splits_match_whole_text_redaction() -> None:
    """Streaming never differs from redacting the block's whole text."""
    rng = random.Random(7)
    for _ in range(400):
        secrets = ["".join(rng.choice("ab") for _ in range(rng.randint(4, 6))) for _ in "12"]
        r = Redactor(secrets)
        text = "".join(rng.choice("abx") for _ in range(rng.randint(0, 30)))
        cuts = sorted(rng.sample(range(len(text) + 1), min(len(text) + 1, rng.randint(0, 5))))
        chunks = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        assert _text(_stream(r, chunks)) == r.redact(text), (secrets, text, chunks)


def test_held_text_is_released_at_another_event_and_at_flush() -> None:
    """Blocks are held apart; a non-delta event releases every block first; flush at finish."""
    stream = DeltaRedactor(Redactor([SECRET]))
    half = len(SECRET) // 2
    assert stream.feed({"type": "text-delta", "id": "out", "delta": SECRET[:half]}) == []
    start = {"type": "text-start", "id": "err"}
    assert stream.feed(start) == [start]  # another block opening releases nothing
    assert stream.feed({"type": "text-delta", "id": "err", "delta": "npm_"}) == []
    out = stream.feed({"type": "text-delta", "id": "out", "delta": SECRET[half:] + " ok"})
    assert out == [{"type": "text-delta", "id": "out", "delta": f"{REDACTED} ok"}]
    assert stream.feed({"type": "text-delta", "id": "out", "delta": "np"}) == []
    tool = {"type": ev.TOOL_CALL_START, "toolCallId": "c1", "toolName": "bash"}
    assert stream.feed(tool) == [
        {"type": "text-delta", "id": "err", "delta": "npm_"},
        {"type": "text-delta", "id": "out", "delta": "np"},
        tool,
    ]
    assert stream.feed({"type": "text-delta", "id": "out", "delta": SECRET[:5]}) == []
    assert stream.flush() == [{"type": "text-delta", "id": "out", "delta": SECRET[:5]}]
    assert stream.flush() == []


def test_nested_event_values_are_redacted_but_not_protocol_fields() -> None:
    r = Redactor([SECRET])
    event = {
        "type": ev.TOOL_OUTPUT_AVAILABLE,
        "toolCallId": "c1",
        "toolName": "bash",
        "output": {
            "stdout": f"export NPM_TOKEN={SECRET}",
            "lines": [SECRET, {"deep": [f"x{SECRET}x", 3, None, True]}],
            SECRET: "as a key",
        },
    }
    assert r.redact_value(event) == r.redact_event(event)
    assert r.redact_event(event) == {
        "type": ev.TOOL_OUTPUT_AVAILABLE,
        "toolCallId": "c1",
        "toolName": "bash",
        "output": {
            "stdout": f"export NPM_TOKEN={REDACTED}",
            "lines": [REDACTED, {"deep": [f"x{REDACTED}x", 3, None, True]}],
            REDACTED: "as a key",
        },
    }
    typed = {"type": "text-delta", "id": "abcd", "delta": "abcd"}
    assert Redactor(["abcd"]).redact_event(typed) == {**typed, "delta": REDACTED}
    stream = DeltaRedactor(r)
    assert stream.feed(event) == [r.redact_event(event)]
    assert stream.feed(ev.error(f"boom {SECRET}")) == [ev.error(f"boom {REDACTED}")]


def test_the_registry_and_the_log_processors_redact_running_secrets() -> None:
    from agentyard.logging import RedactSecrets, redact_secrets

    registry = SecretRegistry()
    registry.register("run-1", [SECRET])
    registry.register("run-2", ["second-secret"])
    assert registry.redactor.redact(f"{SECRET} second-secret") == f"{REDACTED} {REDACTED}"
    registry.unregister("run-1")
    assert registry.redactor.redact(SECRET) == SECRET
    registry.unregister("run-2")
    registry.unregister("run-2")
    assert not registry.redactor

    RUNNING.register("test-run", [SECRET])
    try:
        line = redact_secrets(
            None,
            "info",
            {
                "event": f"run {SECRET}",
                "error": {"text": SECRET},
                "obj": ValueError(SECRET),
                "n": 1,
            },
        )
        assert line == {
            "event": f"run {REDACTED}",
            "error": {"text": REDACTED},
            "obj": f"ValueError('{REDACTED}')",
            "n": 1,
        }
        try:
            raise RuntimeError(f"failed with {SECRET}")
        except RuntimeError:
            import sys

            record = logging.LogRecord(
                "x", logging.ERROR, __file__, 1, "oops %s", (SECRET,), sys.exc_info()
            )
        assert RedactSecrets().filter(record)
        formatted = logging.Formatter().format(record)
        assert SECRET not in formatted and f"oops {REDACTED}" in formatted
        assert f"failed with {REDACTED}" in formatted
    finally:
        RUNNING.unregister("test-run")
    assert redact_secrets(None, "info", {"event": SECRET}) == {"event": SECRET}


# -- environmentVariables --------------------------------------------------------------------


def test_both_forms_parse() -> None:
    assert envvars.parse(None) is None
    assert envvars.parse({"NPM_TOKEN": "x", "_A1": ""}) == {"NPM_TOKEN": "x", "_A1": ""}
    raw = "# a comment\n\nNPM_TOKEN=abc=def\r\n  # indented comment\n B = spaced \nB=later\n"
    assert envvars.parse(raw) == {"NPM_TOKEN": "abc=def", "B": "later"}
    assert envvars.parse("") == {} and envvars.parse({}) == {}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (42, "must be an object of strings or a string"),
        (["A=b"], "must be an object of strings or a string"),
        ("A=1\nno equals here", "line 2 is not KEY=VALUE"),
        ({"A": 1}, "the value of 'A' must be a string"),
        ({"A": None}, "the value of 'A' must be a string"),
        ({"1ABC": "x"}, "'1ABC' is not a valid name"),
        ({"A-B": "x"}, "'A-B' is not a valid name"),
        ("=x", "'' is not a valid name"),
        ("BAD NAME=x", "'BAD NAME' is not a valid name"),
        ({f"V{i}": "x" for i in range(101)}, "at most 100 variables"),
        ({"BIG": "x" * (32 * 1024 + 1)}, "the value of BIG exceeds 32768 bytes"),
    ],
)
def test_bad_variables_are_refused_saying_why(raw: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(")):
        envvars.parse(raw)


RESERVED = [
    *("PATH", "HOME", "USER", "LOGNAME", "SHELL", "PWD", "TMPDIR", "TERM", "LANG"),
    *("LD_PRELOAD", "LD_LIBRARY_PATH", "HTTP_PROXY", "https_proxy", "ALL_PROXY", "no_proxy"),
    *("FTP_PROXY", "OPENAI_BASE_URL", "MY_BASE_URL", "AGENTYARD_PROMPT", "AGENTYARD_RUN_ID"),
    *("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "CLAUDE_CONFIG_DIR", "CODEX_HOME"),
    *("GEMINI_API_KEY", "GOOGLE_APPLICATION_CREDENTIALS"),
]


@pytest.mark.parametrize("name", RESERVED)
def test_reserved_names_are_refused_by_name(name: str) -> None:
    with pytest.raises(InvalidInput, match=f"{name} is reserved"):
        envvars.parse({name: "value"})
    with pytest.raises(InvalidInput, match=f"{name} is reserved"):
        envvars.parse(f"OK=1\n{name}=value")


def test_allowed_names_that_resemble_reserved_ones() -> None:
    ok = {"NPM_TOKEN": "1", "PATHS": "1", "MY_HOME": "1", "PROXY": "1", "GITHUB_TOKEN": "1"}
    assert envvars.parse(ok) == ok
    assert envvars.parse({"V": "x" * 32 * 1024}) == {"V": "x" * 32 * 1024}
    assert len(envvars.parse({f"V{i}": "x" for i in range(100)}) or {}) == 100


def test_errors_never_show_a_value() -> None:
    with pytest.raises(InvalidInput) as info:
        envvars.parse(f"NPM_TOKEN={SECRET}\n{SECRET}")
    assert SECRET not in str(info.value)
    with pytest.raises(InvalidInput) as info:
        envvars.parse({"BIG": SECRET * 2000})
    assert SECRET not in str(info.value)


def test_sealed_variables_open_only_with_their_key() -> None:
    from agentyard.crypto import SecretBox

    box = SecretBox("one")
    sealed = envvars.seal(box, {"NPM_TOKEN": SECRET})
    assert SECRET not in sealed
    assert envvars.unseal(box, sealed) == {"NPM_TOKEN": SECRET}
    assert envvars.unseal(SecretBox("two"), sealed) is None
