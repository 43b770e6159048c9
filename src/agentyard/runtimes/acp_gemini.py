"""Gemini built in: the Gemini CLI (``@google/gemini-cli``, pinned) in ACP mode.

``make install`` puts the CLI into the project with npm (``.venv/node``, never a global
install) when Node.js >= 20 is present. A run starts ``node <cli> --acp --model <model>`` in
the workspace with its own ``HOME`` under the chat's state directory, holding a generated
``.gemini/settings.json``: API-key auth selected, telemetry, usage statistics and update
checks off. The workspace stays an *untrusted* folder, so a repository's own
``.gemini/settings.json``, hooks and agents are never loaded; in an untrusted folder the CLI
asks before every tool instead of running it (its approval mode is forced to ``default``), and
the runtime's permission policy answers each request: tools work, decided by the policy, never
silently downgraded. The key reaches the CLI only through its environment (``GEMINI_API_KEY``,
in a sandbox the run's proxy token) and the model through ``GOOGLE_GEMINI_BASE_URL``.

A continued chat loads the CLI's session (``session/load``). The CLI records a session in
``~/.gemini/tmp/<project>/chats/session-<minute>-<id8>.jsonl``, and ``session/load`` first
starts a fresh record for the same id *before* it looks the session up: in the minute the
session began, that fresh record is the same file, whose history it resets, so the CLI finds
nothing to resume ("No previous sessions found"). Before a continued run the session's
records are therefore renamed out of the CLI's naming scheme (``session-<minute>-kept-<id8>
.jsonl``, which its session listing still reads, and which the resumed chat goes on
appending to); the fresh record then lands beside them, empty and ignored. The CLI's own
session clean-up is off: at start-up it deletes an empty record together with every record
of the same id prefix, which would take the chat's history with the stub that
``session/load`` leaves. A chat's records live as long as its state directory.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from agentyard.core.routing import check_native_model
from agentyard.runtimes import statedir
from agentyard.runtimes.acp import Launch, base_environment
from agentyard.runtimes.base import Availability, RunSpec, RuntimeNotConfigured

GEMINI_CLI_VERSION = "0.61.0"
"""The pinned ``@google/gemini-cli`` (the Makefile installs this version)."""
KEY_ENV = "GEMINI_API_KEY"
DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
DEFAULT_MODEL = "gemini-2.5-pro"
NODE_MIN = 20
_CLI = Path("node_modules") / "@google" / "gemini-cli"
_RECORD = re.compile(r"session-(\d{4}-\d{2}-\d{2}T\d{2}-\d{2})-([0-9A-Za-z_-]{1,8})\.jsonl")
"""The CLI's name for a session record it starts (``session-<minute>-<id8>.jsonl``)."""


def install_dir() -> Path:
    """Where ``make install`` puts the CLI: inside the virtualenv, so the sandbox's
    read-only view of the virtualenv covers it."""
    return Path(sys.prefix) / "node"


def settings_json(model: str) -> str:
    settings = {
        "security": {"auth": {"selectedType": "gemini-api-key"}, "folderTrust": {"enabled": True}},
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False, "logPrompts": False},
        "general": {
            "enableAutoUpdate": False,
            "enableAutoUpdateNotification": False,
            # Its clean-up at start-up deletes every record sharing an id prefix with an
            # empty one (session/load leaves one): the chat's own history with it.
            "sessionRetention": {"enabled": False},
        },
        "model": {"name": model},
    }
    return json.dumps(settings, indent=2) + "\n"


def keep_session_records(home: Path, session_id: str) -> list[Path]:
    """Rename the session's records out of the CLI's naming scheme, so that ``session/load``
    cannot start its fresh record in one of them (see the module's docstring); returns the
    new paths. Nothing planted in the state directory is followed: only real directories
    are entered and only regular files renamed (a rename moves a name, never a target)."""
    short = session_id[:8]
    kept: list[Path] = []
    projects = home / ".gemini" / "tmp"
    if projects.is_symlink() or not projects.is_dir():
        return kept
    with os.scandir(projects) as found:
        candidates = [Path(p.path) / "chats" for p in found if p.is_dir(follow_symlinks=False)]
    for chats in candidates:
        if chats.is_symlink() or not chats.is_dir():
            continue
        with os.scandir(chats) as found:
            records = [e for e in found if e.is_file(follow_symlinks=False)]
        for entry in records:
            match = _RECORD.fullmatch(entry.name)
            if match is None or match[2] != short:
                continue
            target = chats / f"session-{match[1]}-kept-{short}.jsonl"
            if target.exists() or target.is_symlink():
                continue  # an earlier record of the minute was kept: this one is a stub
            os.rename(entry.path, target)
            kept.append(target)
    return kept


@functools.lru_cache(maxsize=8)
def _node_major(node: str) -> int | None:
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10)
        return int(out.stdout.strip().lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


@dataclass
class GeminiProfile:
    api_key: str | None = None
    base_url: str | None = None
    default_model: str = DEFAULT_MODEL
    cli_dir: Path | None = None
    """The installed package (``.../node_modules/@google/gemini-cli``); the project's if None."""
    node: str | None = None
    label: str = "the Gemini CLI"
    auth_method: str | None = "gemini-api-key"
    key_env: str = KEY_ENV
    """Named in the error when the provider refuses the key."""

    def _package(self) -> Path:
        return self.cli_dir or install_dir() / _CLI

    def _script(self) -> Path | None:
        try:
            package = json.loads((self._package() / "package.json").read_text())
        except (OSError, ValueError):
            return None
        script = self._package() / str(package.get("bin", {}).get("gemini", "bundle/gemini.js"))
        return script if script.is_file() else None

    def _node(self) -> str | None:
        return self.node or shutil.which("node")

    def installed_version(self) -> str | None:
        try:
            return str(json.loads((self._package() / "package.json").read_text())["version"])
        except (OSError, ValueError, KeyError):
            return None

    def problem(self) -> str | None:
        """Why gemini cannot run here, in words with what to do; None if it can."""
        node = self._node()
        major = _node_major(node) if node else None
        if node is None or major is None:
            return f"Node.js >= {NODE_MIN} is not installed (the Gemini CLI needs it)"
        if major < NODE_MIN:
            return f"Node.js {major} is too old: the Gemini CLI needs Node.js >= {NODE_MIN}"
        if self._script() is None:
            return f"the Gemini CLI is not installed (run make install; it goes to {install_dir()})"
        if not self.api_key:
            return f"no API key: set {KEY_ENV} (and GOOGLE_GEMINI_BASE_URL for a gateway)"
        return None

    def check_model(self, model: str | None) -> None:
        """On the provider's own API, another provider's model is a 400 at create time."""
        if self.base_url is None:
            check_native_model("gemini", model)

    def availability(self) -> Availability:
        problem = self.problem()
        if problem is not None:
            return Availability(False, problem, None)
        where = self.base_url or "the Gemini API"
        version = self.installed_version()
        return Availability(True, f"Gemini CLI {version} (ACP) via {where}", self.default_model)

    def launch(self, spec: RunSpec) -> Launch:
        problem = self.problem()
        if problem is not None:
            raise RuntimeNotConfigured(f"Gemini is not available: {problem}")
        node, script = self._node(), self._script()
        assert node is not None and script is not None and self.api_key
        model = (spec.model or self.default_model).removeprefix("google/")
        home = statedir.own_dir(spec.state_dir, "gemini")
        config = statedir.own_dir(home, ".gemini")
        statedir.write_file(config, "settings.json", settings_json(model))
        if spec.resume_session:
            # On failure session/load says why, and the run starts a new session.
            with contextlib.suppress(OSError):
                keep_session_records(home, spec.resume_session)
        endpoint = spec.sandbox.endpoint(
            "gemini", self.base_url or DEFAULT_BASE_URL, self.api_key, "x-goog-api-key"
        )
        env = base_environment(spec)
        env.update(
            {
                "HOME": str(home),
                "GEMINI_CLI_HOME": str(home),
                KEY_ENV: endpoint.api_key,
                "GOOGLE_GEMINI_BASE_URL": endpoint.base_url,
                "GEMINI_TELEMETRY_ENABLED": "false",
                "GOOGLE_GENAI_USE_VERTEXAI": "false",
                "NO_BROWSER": "true",
            }
        )
        return Launch([node, str(script), "--acp", "--model", model], env, model)
