"""The DNS part of the repoUrl rules: a repository host must resolve to public addresses only
(no loopback, private, link-local or reserved ranges) unless the operator allowed it.

Resolution is a check at task creation; git resolves the name again when it connects, so
this narrows, but cannot close, the window for a host whose DNS answer changes in between.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from agentyard.core.errors import InvalidInput
from agentyard.core.repo_rules import RepoUrl, normal_host

RESOLVE_TIMEOUT = 5.0


async def check_public_host(host: str, port: int, what: str, allow_hint: str) -> None:
    """InvalidInput unless ``host`` resolves, within the timeout, to public addresses only;
    ``what`` names the field, ``allow_hint`` says how an operator allows the host."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT
        )
    except TimeoutError:
        raise InvalidInput(f"{what} host {host!r} did not resolve in time") from None
    except (OSError, UnicodeError):
        raise InvalidInput(f"{what} host {host!r} does not resolve") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise InvalidInput(
                f"{what} host {host!r} resolves to a non-public address ({address}); {allow_hint}"
            )


async def check_resolves_publicly(repo: RepoUrl, private_hosts: list[str]) -> None:
    """InvalidInput if the host resolves to a non-public address and is not in
    ``private_hosts`` (an IPv6 address there with or without its brackets)."""
    if repo.host in {normal_host(h) for h in private_hosts}:
        return
    await check_public_host(repo.host, repo.port or 443, "repoUrl", "allow it explicitly to use it")
