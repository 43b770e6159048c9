"""The rules a task's ``repoUrl`` must follow (pure: the DNS check lives in the workspace).

https only (http only for a host allow-listed as ``http://host[:port]``); the host must be
allow-listed; no ``file://``, ``ssh://``, scp-style ``git@host:``, transports like ``ext::``,
embedded credentials, query or fragment. An IPv6 host is written in brackets, in URLs and
in the allow-list alike (``http://[::1]:8000``).
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from agentyard.core.errors import InvalidInput

_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")
_HOSTNAME = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*\.?")


@dataclass(frozen=True)
class RepoUrl:
    url: str
    scheme: str
    host: str
    port: int | None
    owner: str
    repo: str


@dataclass(frozen=True)
class HostRule:
    host: str
    port: int | None
    http: bool

    @classmethod
    def parse(cls, entry: str) -> HostRule:
        """An allow-list entry: ``host``, ``host:port``, ``https://host[:port]`` or
        ``http://host[:port]`` (plain http allowed), an IPv6 address in brackets. ValueError,
        saying what is wrong, for anything else."""
        scheme, sep, rest = entry.strip().partition("://")
        if not sep:
            scheme, rest = "https", scheme
        scheme = scheme.lower()
        rest = rest.rstrip("/")
        if scheme not in ("https", "http"):
            raise ValueError(f"repo host {entry!r}: only https:// or http:// may prefix a host")
        if (
            not rest
            or not (rest.isascii() and rest.isprintable())
            or any(c in rest for c in " /?#@\\")
        ):
            raise ValueError(
                f"repo host {entry!r} must be host[:port], without path or credentials"
            )
        if rest.count(":") > 1 and not rest.startswith("["):
            raise ValueError(f"repo host {entry!r}: write an IPv6 address in brackets, like [::1]")
        try:
            parts = urlsplit(f"//{rest}")
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"repo host {entry!r} is not host[:port] ({exc})") from None
        host = (parts.hostname or "").lower()
        if rest.startswith("["):
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise ValueError(f"repo host {entry!r}: {host!r} is not an IPv6 address") from None
        elif not _HOSTNAME.fullmatch(host):
            raise ValueError(f"repo host {entry!r}: {host!r} is not a host name or address")
        return cls(host, port, scheme == "http")


def normal_host(name: str) -> str:
    """A host as ``urlsplit(...).hostname`` gives it: lowercase, an IPv6 address without
    its brackets."""
    name = name.strip().lower()
    return name[1:-1] if name.startswith("[") and name.endswith("]") else name


def split_web_url(
    url: str, name: str, credentials_hint: str = ""
) -> tuple[SplitResult, str, str, int | None]:
    """An http(s) URL's parts, its scheme and host (lowercase) and its port. InvalidInput,
    naming ``name``, unless it is a valid URL over https or http, with no credentials, no
    fragment and a host (what any URL the server calls out to must be)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(f"{name} is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise InvalidInput(f"{name} must use https (got {scheme or 'no scheme'!r})")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise InvalidInput(f"{name} must not embed credentials{credentials_hint}")
    if parts.fragment:
        raise InvalidInput(f"{name} must not have a fragment")
    host = (parts.hostname or "").lower()
    if not host:
        raise InvalidInput(f"{name} has no host")
    return parts, scheme, host, port


def parse_repo_url(raw: str, allowed_hosts: list[str]) -> RepoUrl:
    url = raw.strip()
    allowed = ", ".join(allowed_hosts) or "none"
    if "::" in url.split("/", 1)[0]:
        raise InvalidInput("repoUrl must be an https URL (transport syntax like ext:: is refused)")
    if re.match(r"^[\w.-]+@[\w.-]+:", url):
        raise InvalidInput("repoUrl must be an https URL (scp-style ssh URLs are refused)")
    parts, scheme, host, port = split_web_url(url, "repoUrl", "; connect GitHub instead")
    if parts.query:
        raise InvalidInput("repoUrl must not have a query or a fragment")
    rule = next(
        (
            r
            for r in map(HostRule.parse, allowed_hosts)
            if r.host == host and (r.port is None or r.port == port)
        ),
        None,
    )
    if rule is None:
        raise InvalidInput(f"repoUrl host {host!r} is not allowed (allowed: {allowed})")
    if scheme == "http" and not rule.http:
        raise InvalidInput("repoUrl must use https")
    if port is not None and rule.port is None and port != 443:
        raise InvalidInput(f"repoUrl port {port} is not allowed for {host}")
    segments = [s for s in parts.path.split("/") if s]
    if not segments or any(
        s in (".", "..") or not _SEGMENT.fullmatch(unicodedata.normalize("NFKC", s))
        for s in segments
    ):
        raise InvalidInput("repoUrl path must name a repository, like /owner/repo.git")
    repo = segments[-1].removesuffix(".git")
    owner = "/".join(segments[:-1])
    literal = f"[{host}]" if ":" in host else host
    netloc = literal if port is None else f"{literal}:{port}"
    path = "/".join([*segments[:-1], f"{repo}.git"])
    return RepoUrl(f"{scheme}://{netloc}/{path}", scheme, host, port, owner, repo)


def branch_name(prompt: str, run_id: str, suffix: str | None = None) -> str:
    """``agentyard/<slug of the prompt>-<first 8 of the run id>[-<suffix>]``: ASCII,
    lowercase, and always a valid branch name."""
    slug = _slug(prompt, 40) or "task"
    short = _slug(run_id, 8) or "run"
    name = f"agentyard/{slug}-{short[:8]}"
    tail = _slug(suffix or "", 40)
    return f"{name}-{tail}" if tail else name


def _slug(text: str, limit: int) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:limit].rstrip("-")


_BAD_REF = re.compile(
    r"(^[-/.])|(\.\.)|([/.]$)|(//)|(@\{)|(\.lock$)|(/\.)|([\x00-\x20~^:?*\[\\\x7f])"
)


def is_branch_name(name: str) -> bool:
    """What ``git check-ref-format --branch`` accepts, for the names a client sends."""
    return bool(name) and len(name) <= 255 and _BAD_REF.search(name) is None
