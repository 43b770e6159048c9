"""The rules a webhook URL must follow, at registration and again before every attempt.

https only; plain http only for a host allow-listed as ``http://host[:port]``. The host must
resolve to public addresses only (no loopback, private, link-local or reserved ranges)
unless it is in the private-hosts list. No credentials, no fragment. Redirects are never
followed, so the checked URL is the one reached. The DNS answer is checked before each
attempt; httpx resolves the name again when it connects, which narrows but cannot close
the window for a host whose answer changes in between.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from agentyard.core.errors import InvalidInput
from agentyard.core.repo_rules import HostRule, split_web_url
from agentyard.workspace.repo_policy import check_public_host

MAX_URL = 2000


class WebhookUrls:
    def __init__(self, private_hosts: list[str]) -> None:
        self.rules = [HostRule.parse(entry) for entry in private_hosts]

    def parse(self, raw: str, field: str = "url") -> str:
        """The URL, or InvalidInput naming the rule it breaks (no DNS: see ``check``)."""
        url = raw.strip()
        if not url or len(url) > MAX_URL:
            raise InvalidInput(f"'{field}' must be a URL of at most {MAX_URL} characters")
        if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
            raise InvalidInput(f"'{field}' must not contain spaces or control characters")
        _, scheme, host, port = split_web_url(url, f"'{field}'")
        if scheme == "http":
            rule = self._rule(host, port)
            if rule is None or not rule.http:
                raise InvalidInput(
                    f"'{field}' must use https (plain http only for a host allowed as "
                    "http://host:port in AGENTYARD_WEBHOOK_PRIVATE_HOSTS)"
                )
        return url

    async def check(self, url: str, field: str = "url") -> None:
        """``parse``, then the DNS rule: InvalidInput if the host resolves to a non-public
        address and is not allowed to."""
        self.parse(url, field)
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        if self._rule(host, parts.port) is not None:
            return
        await check_public_host(
            host,
            port,
            f"'{field}'",
            "allow it in AGENTYARD_WEBHOOK_PRIVATE_HOSTS to use it",
        )

    def _rule(self, host: str, port: int | None) -> HostRule | None:
        return next(
            (r for r in self.rules if r.host == host and (r.port is None or r.port == port)),
            None,
        )
