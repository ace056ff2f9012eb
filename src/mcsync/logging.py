"""structlog as JSON, one event per line, with stable keys and no secrets."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_KEYS = {"token", "access_token", "authorization", "password", "secret", "client_secret"}
_BEARER = re.compile(r"(Bearer|OAuth|Basic)\s+[A-Za-z0-9._~+/=-]+")


def _redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Never let a token reach a log line, whatever a caller passes."""
    for key in list(event_dict):
        if key.lower() in _SECRET_KEYS:
            event_dict[key] = "[redacted]"
        elif isinstance(event_dict[key], str):
            event_dict[key] = _BEARER.sub(r"\1 [redacted]", event_dict[key])
    return event_dict


def configure_logging(level: str = "INFO", stream: Any = None) -> None:
    logging.basicConfig(format="%(message)s", stream=stream or sys.stderr, level=level)
    for noisy in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "mcsync") -> Any:
    return structlog.get_logger(name)
