"""structlog as JSON, one event per line, with stable keys and no secrets.

Redaction is the last step before rendering, for every event whatever a caller passes: a value
under a secret-sounding key (any case, at any depth of nested dicts and lists) is replaced, and
every string (including a rendered traceback, which structlog makes into the `exception` string
before this step) has credentials cut out of it: `Bearer`/`OAuth`/`Basic` headers in any case,
`key=value` and `"key": "value"` pairs for secret keys (a URL's `?code=...`, a form body, a JSON
body, a `KEY=value` line; any key with a secret part, `oauth_token` or `x-api-key`), the
password of a `scheme://user:password@host` URL, and anything shaped like a JWT or a Fernet
token. Bytes are decoded and any other object is redacted through its repr (what the JSON
renderer would print). The standard library's records (httpx,
uvicorn) go through the same text redaction."""

from __future__ import annotations

import logging
import re
import sys
import traceback
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

REDACTED = "[redacted]"

# Keys whose values are credentials: compared lower-cased, with '-' read as '_'.
SECRET_KEYS = frozenset(
    {
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "authorization",
        "password",
        "passwd",
        "secret",
        "client_secret",
        "jwt_secret",
        "code",
        "jwt",
        "api_key",
        "apikey",
        "cookie",
        "cookies",
        "set_cookie",
        "session",
        "encryption_keys",
        "mcsync_encryption_keys",
        "access_token_encrypted",
    }
)
# A key that merely contains one of these is secret too (`user_token`, `db_password`...).
_SECRET_PARTS = ("token", "secret", "password", "authorization", "api_key", "apikey", "cookie")

_KEY_ALTERNATION = "|".join(
    sorted((re.escape(k) for k in SECRET_KEYS | {"client-secret", "set-cookie"}), key=len)[::-1]
)
# A key name in text that is secret by one of its parts, with any prefix or suffix:
# `oauth_token`, `x-api-key`, `MCSYNC_ENCRYPTION_KEYS`, `MAILCHIMP_CLIENT_SECRET`.
_PREFIXED_KEY = (
    r"[A-Za-z0-9_-]*(?:token|secret|passw(?:or)?d|api[_-]?key|authorization|cookie"
    r"|encryption[_-]keys)[A-Za-z0-9_-]*"
)
_TEXT_PATTERNS = [
    # Authorization headers, any case: "Bearer abc", "bearer abc", "OAuth abc", "Basic abc".
    (re.compile(r"\b(bearer|oauth|basic)(\s+)[A-Za-z0-9._~+/=:-]+", re.I), rf"\1\2{REDACTED}"),
    # A URL's or DSN's user information: scheme://user:password@host (a database URL in a
    # settings repr or a connection error's traceback).
    (
        re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://[^:/@\s'\"]*:)[^@\s'\"]+(?=@)"),
        rf"\1{REDACTED}",
    ),
    # key=value (query strings, form bodies, repr of kwargs, KEY=value environment lines) and
    # key: value / "key": "value", for the known keys and any key with a secret part. A quoted
    # value is cut out whole, spaces and all. A value already redacted is left as it is, so
    # text redacted twice (stored redacted, shown redacted) reads the same.
    (
        re.compile(
            rf"""(?<![A-Za-z0-9_-])(["']?(?:{_KEY_ALTERNATION}|{_PREFIXED_KEY})["']?\s*[=:]\s*)"""
            r"""(?!\[redacted\])(?:"[^"]*"|'[^']*'|[^"'&\s,;}\])]+)""",
            re.I,
        ),
        rf"\1{REDACTED}",
    ),
    # A JWT (three base64url parts, the first a JSON header) wherever it appears.
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
    # A Fernet token (mcsync's stored ciphertexts): never useful in a log line.
    (re.compile(r"\bgAAAAA[A-Za-z0-9_=-]{20,}"), REDACTED),
]


# An email address: the app's contacts are people, and a log line never names one (a
# Mailchimp error's "x@y looks fake", a rename's old address). `[email]` holds no '@', so text
# cleaned twice reads the same.
_ADDRESS = re.compile(r"[^\s@\"'<>()\[\],;:]+@[^\s@\"'<>()\[\],;:]+")


def without_addresses(text: str) -> str:
    """`text` with every email address replaced by `[email]`."""
    return _ADDRESS.sub("[email]", text)


def redact_credentials(text: str) -> str:
    """`text` with every credential the patterns know cut out (addresses left as they are:
    the operator's page masks them its own way)."""
    for pattern, replacement in _TEXT_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_text(text: str) -> str:
    """`text` as a log line may carry it: credentials cut out, email addresses replaced."""
    return without_addresses(redact_credentials(text))


def _is_secret_key(key: object) -> bool:
    if not isinstance(key, str):
        return False
    name = key.lower().replace("-", "_")
    return name in SECRET_KEYS or any(part in name for part in _SECRET_PARTS)


def redact_value(value: Any) -> Any:
    """`value` with secrets removed, recursively through mappings, lists, tuples and sets."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: REDACTED if _is_secret_key(k) else redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(v) for v in value]
    if isinstance(value, BaseException):
        return redact_text(f"{type(value).__name__}: {value}")
    if isinstance(value, bytes | bytearray | memoryview):
        return redact_text(bytes(value).decode("utf-8", "replace"))
    if value is None or isinstance(value, bool | int | float):
        return value
    # Anything else reaches the line as its repr (structlog's JSON fallback): a settings
    # object's repr names its fields and values, so it is redacted as text.
    return redact_text(repr(value))


def _redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Never let a credential reach a log line, whatever a caller passes (structlog step)."""
    for key in list(event_dict):
        if _is_secret_key(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = redact_value(event_dict[key])
    return event_dict


def _redact_record(record: logging.LogRecord) -> None:
    """A standard-library record's message, arguments and traceback, redacted in place."""
    record.msg = redact_text(record.getMessage())
    record.args = None
    if record.exc_info:
        rendered = "".join(traceback.format_exception(*record.exc_info))
        record.exc_text = redact_text(rendered.rstrip("\n"))
        record.exc_info = None
    elif record.exc_text:
        record.exc_text = redact_text(record.exc_text)
    if record.stack_info:
        record.stack_info = redact_text(record.stack_info)


def _install_redacting_record_factory() -> None:
    """Redact every standard-library record as it is created, so no handler (uvicorn's own,
    which do not propagate to the root logger, included) ever sees the secret."""
    current = logging.getLogRecordFactory()
    if getattr(current, "mcsync_redacts", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = current(*args, **kwargs)
        _redact_record(record)
        return record

    factory.mcsync_redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def _record_traceback(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A standard-library record's traceback (already rendered and redacted by the record
    factory) under `exception`, as structlog's own events carry theirs."""
    record = event_dict.get("_record")
    if record is not None and record.exc_text:
        event_dict["exception"] = record.exc_text
    return event_dict


def configure_logging(level: str = "INFO", stream: Any = None) -> None:
    """Every log line of the process as one JSON object: structlog's events, and the standard
    library's records (uvicorn's, under `mcsync web`; httpx's) rendered the same way, with the
    same keys (`event`, `level`, `timestamp`, plus `logger`) and the same redaction."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                _record_traceback,
            ],
            # No second redaction: the record factory below redacted the message, arguments
            # and traceback when the record was made.
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    _install_redacting_record_factory()
    for noisy in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # Tracebacks rendered first, so the redaction below sees them as text.
            structlog.processors.format_exc_info,
            _redact,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "mcsync") -> Any:
    return structlog.get_logger(name)
