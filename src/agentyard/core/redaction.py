"""Redaction of secret values (a task's environment variables) from text, events and logs.

Pure: no I/O. A secret is replaced by ``[REDACTED]`` wherever it appears whole and wherever
its base64 encoding appears, in the standard and the URL-safe alphabet, at each of the three
byte alignments the value can have inside a longer base64 string: for each alignment only
the characters that depend on the value's bytes alone are matched (the "stable inner"
characters), so the encoded value is found embedded anywhere in a longer encoding. The one
or two characters at either end that mix in neighbouring bytes (and ``=`` padding) are left.

Only values of at least ``MIN_SECRET_LENGTH`` (4) characters are redacted: shorter ones
would match ordinary text everywhere. Occurrences that overlap are redacted as one.

Streamed text (``text-delta`` / ``reasoning-delta`` events of one block) is redacted by
``DeltaRedactor``: it holds back only the shortest tail of a block's pending text that could
still be the start of a secret, and releases it at the block's end event, at any other
non-delta event (but a block's start: it carries no content), and at ``flush`` (the run's
finish). What it releases, joined, is exactly
``redact`` of the block's whole text.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from agentyard.core import events as ev
from agentyard.core.events import Event

REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 4

_URLSAFE = str.maketrans("+/", "-_")
_DELTA_END = {ev.TEXT_DELTA: ev.TEXT_END, ev.REASONING_DELTA: ev.REASONING_END}
_END_DELTA = {end: delta for delta, end in _DELTA_END.items()}
_STARTS = frozenset({ev.TEXT_START, ev.REASONING_START})
# An event's protocol fields: made by the runtimes and the server, never agent output, and
# what clients fold events by. Left as they are.
_PROTOCOL_FIELDS = frozenset({"type", "id", "toolCallId", "runId", "status"})


def base64_forms(value: str) -> set[str]:
    """The stable inner characters of ``value``'s base64 encoding at each byte alignment,
    in both alphabets: found in any base64 string that encodes ``value`` among other bytes."""
    raw = value.encode()
    forms: set[str] = set()
    for skew in range(3):
        encoded = base64.b64encode(b"\0" * skew + raw).decode()
        # Character i holds bits [6i, 6i + 6); the value's bits are [8 skew, 8 (skew + n)).
        start = -(-8 * skew // 6)
        end = 8 * (skew + len(raw)) // 6
        inner = encoded[start:end]
        if inner:
            forms.add(inner)
            forms.add(inner.translate(_URLSAFE))
    return forms


class Redactor:
    """Replaces the given secret values (and their base64 forms) with ``[REDACTED]``."""

    def __init__(self, values: Iterable[str]) -> None:
        self.values = frozenset(v for v in values if len(v) >= MIN_SECRET_LENGTH)
        patterns: set[str] = set()
        for value in self.values:
            patterns.add(value)
            patterns |= base64_forms(value)
        self._patterns = tuple(sorted(patterns, key=len, reverse=True))

    def __bool__(self) -> bool:
        return bool(self._patterns)

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where secrets occur in ``text``: sorted, overlapping occurrences merged."""
        found: list[tuple[int, int]] = []
        for pattern in self._patterns:
            i = text.find(pattern)
            while i != -1:
                found.append((i, i + len(pattern)))
                i = text.find(pattern, i + 1)
        if not found:
            return []
        found.sort()
        merged = [found[0]]
        for start, end in found[1:]:
            last_start, last_end = merged[-1]
            if start < last_end:
                merged[-1] = (last_start, max(last_end, end))
            else:
                merged.append((start, end))
        return merged

    def redact(self, text: str) -> str:
        if not self._patterns:
            return text
        return _replace(text, self.spans(text))

    def redact_value(self, value: Any) -> Any:
        """``value`` with every string in it redacted, through dicts (keys too) and lists."""
        if not self._patterns:
            return value
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, Mapping):
            return {self.redact_value(k): self.redact_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact_value(v) for v in value]
        return value

    def redact_event(self, event: Event) -> Event:
        """An event with everything but its protocol fields (type, ids, status) redacted."""
        if not self._patterns:
            return event
        return {k: v if k in _PROTOCOL_FIELDS else self.redact_value(v) for k, v in event.items()}

    def releasable(self, text: str) -> tuple[int, list[tuple[int, int]]]:
        """How much of streamed ``text`` can be let out now, and the secrets' spans in that
        part: all but the shortest tail that could still grow into a secret (a tail that is
        a proper prefix of one, or a whole secret that a longer one could still extend)."""
        spans = self.spans(text)
        cut = self._prefix_start(text)
        for start, end in spans:
            if start < cut < end:
                # A secret found whole may still be part of a longer overlapping one.
                cut = start
                break
        return cut, [s for s in spans if s[1] <= cut]

    def _prefix_start(self, text: str) -> int:
        """The earliest position whose rest of ``text`` is a proper prefix of a pattern."""
        n = len(text)
        best = n
        for pattern in self._patterns:
            low = max(0, n - len(pattern) + 1)
            if low >= best:
                continue
            first = pattern[0]
            i = text.find(first, low, best)
            while i != -1:
                if pattern.startswith(text[i:]):
                    best = i
                    break
                i = text.find(first, i + 1, best)
        return best


def _replace(text: str, spans: list[tuple[int, int]]) -> str:
    if not spans:
        return text
    out: list[str] = []
    last = 0
    for start, end in spans:
        out.append(text[last:start])
        out.append(REDACTED)
        last = end
    out.append(text[last:])
    return "".join(out)


class DeltaRedactor:
    """Redacts a run's events in order, including secrets split across the streamed deltas
    of one text or reasoning block."""

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        self._held: dict[tuple[str, str], tuple[Event, str]] = {}
        """(delta type, block id) -> (the block's last delta event, its text held back)."""

    def feed(self, event: Event) -> list[Event]:
        """The events to store in place of ``event`` (none while a delta is all held back)."""
        if not self.redactor:
            return [event]
        kind = event.get("type")
        if kind in _DELTA_END and isinstance(event.get("delta"), str):
            key = (str(kind), str(event.get("id")))
            _, held = self._held.pop(key, (event, ""))
            text = held + event["delta"]
            cut, spans = self.redactor.releasable(text)
            if cut < len(text):
                self._held[key] = (event, text[cut:])
            return [self._delta(event, _replace(text[:cut], spans))] if cut else []
        if kind in _END_DELTA:
            released = self._release((_END_DELTA[str(kind)], str(event.get("id"))))
            return [*released, self.redactor.redact_event(event)]
        if kind in _STARTS:
            # Another block opening (e.g. stderr beside stdout) carries no content: the
            # blocks held back stay held, so that a secret continued after it is still found.
            return [self.redactor.redact_event(event)]
        return [*self.flush(), self.redactor.redact_event(event)]

    def flush(self) -> list[Event]:
        """Every block's held-back text, redacted (at a non-delta event and at finish)."""
        released: list[Event] = []
        for key in list(self._held):
            released.extend(self._release(key))
        return released

    def _release(self, key: tuple[str, str]) -> list[Event]:
        entry = self._held.pop(key, None)
        if entry is None:
            return []
        template, text = entry
        return [self._delta(template, self.redactor.redact(text))]

    def _delta(self, template: Event, text: str) -> Event:
        return {**self.redactor.redact_event(template), "delta": text}


class SecretRegistry:
    """The secrets of the runs executing in this process, for redacting the server's logs.

    Registered and removed by the runner; read from any thread by the log processors.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, frozenset[str]] = {}
        self._redactor = Redactor(())

    def register(self, key: str, values: Iterable[str]) -> None:
        with self._lock:
            self._values[key] = frozenset(values)
            self._rebuild()

    def unregister(self, key: str) -> None:
        with self._lock:
            if self._values.pop(key, None) is not None:
                self._rebuild()

    @property
    def redactor(self) -> Redactor:
        return self._redactor

    def _rebuild(self) -> None:
        everything: set[str] = set()
        for values in self._values.values():
            everything |= values
        self._redactor = Redactor(everything)


RUNNING = SecretRegistry()
"""The process-wide registry: the runner registers each run's secrets while it executes."""
