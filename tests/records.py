"""The runs store tests insert: a queued run and its user message, in a new chat or an old one."""

from __future__ import annotations

from datetime import datetime

from agentyard.core import ids
from agentyard.core.clock import utcnow
from agentyard.core.models import Chat, Message, Run
from agentyard.store.store import Store


def queued_run(
    chat_id: str,
    user: str = "alice",
    created_at: datetime | None = None,
    *,
    agent: str = "claude",
    model: str | None = None,
    prompt: str = "hello",
) -> tuple[Run, Message]:
    """A queued run of ``user`` in ``chat_id`` and its user message (not stored)."""
    run = Run.queued(chat_id, user, agent, model, prompt, created_at or utcnow())
    return run, run.user_message()


async def make_run(
    store: Store, user: str = "alice", created_at: datetime | None = None, chat: Chat | None = None
) -> Run:
    """A queued run stored in a new chat of ``user``, or as a follow-up in ``chat``."""
    created = created_at or utcnow()
    new_chat = None
    if chat is None:
        chat = new_chat = Chat(chat_id=ids.new_chat_id(), user_id=user, created_at=created)
    run, message = queued_run(chat.chat_id, user, created)
    await store.create_run(run, message, new_chat=new_chat)
    return run
