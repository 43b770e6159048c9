"""structlog configuration: one line per event, run ids bound as context.

The secrets of the runs executing in this process are redacted from every line, structlog's
and the standard library's (see ``agentyard.core.redaction.RUNNING``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from agentyard.core.redaction import RUNNING

_PLAIN = (str, int, float, bool, type(None), dict, list, tuple)
_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: the executing runs' secrets out of every value of the line."""
    redactor = RUNNING.redactor
    if not redactor:
        return event_dict
    for key, value in event_dict.items():
        if isinstance(value, _PLAIN):
            event_dict[key] = redactor.redact_value(value)
        else:  # rendered by its repr: replaced by the redacted repr only if it had a secret
            shown = repr(value)
            redacted = redactor.redact(shown)
            if redacted != shown:
                event_dict[key] = redacted
    return event_dict


class RedactSecrets(logging.Filter):
    """The same for standard-library log records (message, arguments and traceback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        redactor = RUNNING.redactor
        if not redactor:
            return True
        record.msg = redactor.redact(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = redactor.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redactor.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redactor.redact(record.stack_info)
        return True


def configure(level: str = "info", fmt: str = "console") -> None:
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    logging.basicConfig(stream=sys.stderr, level=numeric, format="%(message)s")
    # The root's handlers see every record that propagates; uvicorn's loggers have their own
    # handlers (installed later, by uvicorn), so their records are filtered where logged.
    filterables: list[logging.Filterer] = [*logging.getLogger().handlers]
    filterables += [logging.getLogger(name) for name in _UVICORN_LOGGERS]
    for filterable in filterables:
        if not any(isinstance(f, RedactSecrets) for f in filterable.filters):
            filterable.addFilter(RedactSecrets())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
