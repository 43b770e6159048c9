"""The Python client of the Agent API v1: ``Client`` (sync) and ``AsyncClient`` (asyncio).

from agentyard.client import Client
with Client() as yard:                       # AGENTYARD_URL / AGENTYARD_KEY
    run = yard.create_task("Add a README in French").run_id
    for event in yard.stream(run):           # resumes by itself, ends at finish
        print(event.type)
    print(yard.wait(run).status)
"""

from agentyard.client import bodies, models
from agentyard.client.aio import AsyncClient
from agentyard.client.errors import (
    AgentyardError,
    ApiError,
    Conflict,
    ConnectionFailed,
    Forbidden,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    ServerError,
    Unauthorized,
)
from agentyard.client.models import Event
from agentyard.client.sync import Client

__all__ = [
    "AgentyardError",
    "ApiError",
    "AsyncClient",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "Event",
    "Forbidden",
    "InvalidInput",
    "NotFound",
    "PayloadTooLarge",
    "ServerError",
    "Unauthorized",
    "bodies",
    "models",
]
