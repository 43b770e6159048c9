"""Choosing and starting the sandbox the settings ask for."""

from __future__ import annotations

import structlog

from agentyard.sandbox.base import Limits, Sandbox, SandboxUnavailable
from agentyard.sandbox.bwrap import BwrapSandbox, find_bwrap
from agentyard.sandbox.none import NoSandbox
from agentyard.sandbox.proxy import EgressPolicy
from agentyard.settings import Settings

log = structlog.get_logger(__name__)


def build_sandbox(settings: Settings) -> Sandbox:
    """The sandbox the settings ask for; ``auto`` is bubblewrap wherever it is installed."""
    if settings.sandbox == "none":
        return NoSandbox("AGENTYARD_SANDBOX=none")
    if settings.sandbox == "auto" and find_bwrap() is None:
        return NoSandbox("bubblewrap is not installed: apt-get install bubblewrap")
    egress = None
    if settings.sandbox_network == "allowlist":
        egress = EgressPolicy(
            tuple(settings.sandbox_allowed_hosts), tuple(settings.sandbox_private_hosts)
        )
    return BwrapSandbox(
        data_dir=settings.resolved_data_dir,
        limits=Limits(
            processes=settings.sandbox_max_processes,
            open_files=settings.sandbox_max_open_files,
            file_bytes=settings.sandbox_max_file_bytes,
            memory_bytes=settings.sandbox_max_memory_bytes,
            tmp_bytes=settings.sandbox_tmp_bytes,
        ),
        egress=egress,
        readonly_paths=settings.sandbox_readonly_paths,
        bridge=settings.sandbox_bridge,
        favour_moves=settings.sandbox_favour_cgroup_moves,
        extra_env={
            "GIT_AUTHOR_NAME": settings.git_author_name,
            "GIT_AUTHOR_EMAIL": settings.git_author_email,
            "GIT_COMMITTER_NAME": settings.git_author_name,
            "GIT_COMMITTER_EMAIL": settings.git_author_email,
        },
    )


async def start_sandbox(sandbox: Sandbox, settings: Settings) -> Sandbox:
    """Start ``sandbox``; with ``auto``, a bubblewrap that cannot work here falls back to
    none (loudly). Whatever runs unconfined is logged as a warning."""
    try:
        await sandbox.start()
    except SandboxUnavailable as exc:
        if settings.sandbox != "auto":
            raise
        sandbox = NoSandbox(str(exc))
        await sandbox.start()
    if sandbox.kind == "none":
        log.warning(
            "agents run unconfined, as the server's own user: serve only trusted users",
            sandbox="none",
            reason=sandbox.describe().get("detail"),
        )
    else:
        log.info("agents run in a sandbox", **sandbox.describe())
    return sandbox
