"""Use cases of a user's API keys: sign in with one, list, create and revoke them.

The dashboard signs in with an API key and keeps only its id in the session, so revoking the
key ends the session; the secret itself is shown once, when created, and stored as a hash.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from agentyard.core import apikeys
from agentyard.core.clock import iso
from agentyard.core.errors import InvalidInput, NotFound
from agentyard.store.store import Store

ENV_KEY_PREFIX = "env-"
"""Key ids of the key given as ``AGENTYARD_API_KEY`` (it has no row in the database)."""


@dataclass(frozen=True)
class KeyHolder:
    key_id: str
    user_id: str


class ApiKeys:
    def __init__(self, store: Store, env_key: str | None, env_user: str) -> None:
        self.store = store
        self._env_key = env_key
        self._env_user = env_user

    def _env_key_id(self) -> str | None:
        if not self._env_key:
            return None
        # A fingerprint, not the key: a changed AGENTYARD_API_KEY ends its sessions.
        return ENV_KEY_PREFIX + hashlib.sha256(self._env_key.encode()).hexdigest()[:16]

    async def identify(self, secret: str) -> KeyHolder | None:
        """The live key of that secret, or None."""
        secret = secret.strip()
        if not secret:
            return None
        env_id = self._env_key_id()
        if env_id is not None and self._env_key and apikeys.same(secret, self._env_key):
            return KeyHolder(env_id, self._env_user)
        found = await self.store.api_keys.for_hash(apikeys.hash_key(secret))
        return None if found is None else KeyHolder(*found)

    async def user_of(self, key_id: str) -> str | None:
        """The user a key id acts as while the key is live; None once it is revoked."""
        if key_id.startswith(ENV_KEY_PREFIX):
            return self._env_user if key_id == self._env_key_id() else None
        return await self.store.api_keys.user_for_id(key_id)

    async def list(self, user_id: str) -> list[dict[str, Any]]:
        rows = await self.store.api_keys.list(user_id)
        return [
            {
                "keyId": r["key_id"],
                "name": r["name"],
                "createdAt": iso(r["created_at"]),
                "revokedAt": iso(r["revoked_at"]),
            }
            for r in rows
        ]

    async def create(self, user_id: str, name: str) -> tuple[str, str]:
        """A new key of the user's as (key id, secret); the secret is never stored."""
        name = name.strip()
        if not 1 <= len(name) <= 200 or not name.isprintable():
            raise InvalidInput("a key's name must be 1 to 200 printable characters")
        key_id, secret, key_hash = apikeys.generate()
        await self.store.api_keys.add(key_id, user_id, name, key_hash)
        return key_id, secret

    async def revoke(self, user_id: str, key_id: str) -> None:
        if key_id.startswith(ENV_KEY_PREFIX):
            raise InvalidInput("this key is set by AGENTYARD_API_KEY: change it there")
        if not await self.store.api_keys.revoke(user_id, key_id):
            raise NotFound(f"no live key {key_id!r} of yours")
