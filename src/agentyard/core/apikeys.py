"""API keys: ``sk-ay-…`` secrets shown once, stored as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets

PREFIX = "sk-ay-"


def generate() -> tuple[str, str, str]:
    """A new key as (key id, the secret to show once, its hash to store)."""
    secret = PREFIX + secrets.token_urlsafe(32)
    return "key_" + secrets.token_hex(6), secret, hash_key(secret)


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(
        a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass")
    )
