"""Identifier formats: runs are UUIDs, chats ``chat_…``, messages ``msg_…``, webhook
endpoints ``whe_…`` and their deliveries ``msg_…`` (the Standard Webhooks message id)."""

from __future__ import annotations

import secrets
import uuid


def new_run_id() -> str:
    return str(uuid.uuid4())


def new_chat_id() -> str:
    return "chat_" + secrets.token_hex(8)


def new_message_id() -> str:
    return "msg_" + secrets.token_hex(8)


def new_webhook_endpoint_id() -> str:
    return "whe_" + secrets.token_hex(8)


def new_webhook_message_id() -> str:
    """A delivery's ``webhook-id``: the same for every attempt, so receivers deduplicate."""
    return "msg_" + secrets.token_hex(12)


def new_group_id() -> str:
    return str(uuid.uuid4())


def is_run_id(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
