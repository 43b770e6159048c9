"""Dashboard sessions: a signed, expiring cookie naming the API key signed in with, and
CSRF tokens bound to a per-browser cookie.

The cookie carries the key's id, never its secret; every request looks the key up again,
so revoking it ends the session at once. Signing out ends the session in this process even
if a copy of the cookie survives (its nonce is refused until the cookie would have expired);
with several API processes behind a balancer, revoking the key is what ends it everywhere.
Both cookies are HttpOnly and SameSite=Strict.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

SESSION_COOKIE = "ay_session"
CSRF_COOKIE = "ay_csrf"
CSRF_FIELD = "csrf"
_MAX_COOKIE = 1024
_MAX_ENDED = 100_000


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Session:
    key_id: str
    expires_at: float
    nonce: str


class Sessions:
    def __init__(self, key: bytes, lifetime_seconds: float) -> None:
        self._key = key
        self.lifetime_seconds = lifetime_seconds
        self._ended: dict[str, float] = {}
        """Nonces of signed-out sessions -> when their cookies expire."""

    def _mac(self, purpose: str, value: str) -> str:
        return _b64(hmac.new(self._key, f"{purpose}|{value}".encode(), hashlib.sha256).digest())

    def issue(self, key_id: str, now: float | None = None) -> str:
        expires = int((now if now is not None else time.time()) + self.lifetime_seconds)
        payload = _b64(json.dumps({"k": key_id, "e": expires, "n": secrets.token_hex(8)}).encode())
        return f"{payload}.{self._mac('session', payload)}"

    def read(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session in a cookie, or None if it is missing, forged or expired."""
        if not cookie or len(cookie) > _MAX_COOKIE or cookie.count(".") != 1:
            return None
        payload, mac = cookie.split(".")
        if not hmac.compare_digest(mac, self._mac("session", payload)):
            return None
        try:
            data = json.loads(_unb64(payload))
        except (ValueError, binascii.Error):
            return None
        if not isinstance(data, dict):
            return None
        key_id, expires, nonce = data.get("k"), data.get("e"), data.get("n")
        if not (isinstance(key_id, str) and isinstance(expires, int) and isinstance(nonce, str)):
            return None
        if expires <= (now if now is not None else time.time()) or nonce in self._ended:
            return None
        return Session(key_id, float(expires), nonce)

    def end(self, cookie: str | None, now: float | None = None) -> None:
        """Sign out: this session's cookie is refused from now on."""
        session = self.read(cookie, now)
        if session is None:
            return
        moment = now if now is not None else time.time()
        if len(self._ended) >= _MAX_ENDED:
            self._ended = {n: e for n, e in self._ended.items() if e > moment}
        self._ended[session.nonce] = session.expires_at

    @staticmethod
    def new_csrf_cookie() -> str:
        return secrets.token_urlsafe(24)

    def csrf_token(self, csrf_cookie: str) -> str:
        """The token forms carry: bound to the browser's cookie and to the server's key, so
        that neither a planted cookie nor a guessed token passes alone."""
        return self._mac("csrf", csrf_cookie)

    def csrf_ok(self, csrf_cookie: str | None, token: str | None) -> bool:
        if not csrf_cookie or not token or len(csrf_cookie) > _MAX_COOKIE:
            return False
        return hmac.compare_digest(token, self.csrf_token(csrf_cookie))
