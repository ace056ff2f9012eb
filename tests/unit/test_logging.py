"""Log redaction, attacked: secrets planted in every place a caller could put one, rendered
through the real logging setup, and looked for in the output."""

from __future__ import annotations

import io
import json
import logging
import secrets
from collections.abc import Iterator

import pytest
import structlog

from mcsync.logging import REDACTED, configure_logging, get_logger, redact_text


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    for handler in handlers:
        root.removeHandler(handler)
    configure_logging("DEBUG", stream=stream)
    yield stream
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    structlog.reset_defaults()


def _secret() -> str:
    return "s3cr3t" + secrets.token_hex(12)


def _assert_clean(stream: io.StringIO, planted: list[str]) -> str:
    text = stream.getvalue()
    assert text, "nothing was logged"
    for value in planted:
        assert value not in text, f"{value} leaked: {text}"
    assert REDACTED in text
    return text


@pytest.mark.parametrize(
    "key",
    [
        "token", "access_token", "refresh_token", "authorization", "Authorization", "password",
        "secret", "client_secret", "code", "jwt", "api_key", "API_KEY", "apiKey", "cookie",
        "Cookie", "set-cookie", "user_token", "db_password",
    ],
)  # fmt: skip
def test_a_secret_key_at_the_top_level_any_case(out: io.StringIO, key: str) -> None:
    value = _secret()
    get_logger().info("event", **{key: value})
    line = json.loads(_assert_clean(out, [value]))
    assert line[key] == REDACTED and line["event"] == "event"


def test_secrets_nested_in_dicts_lists_and_tuples(out: io.StringIO) -> None:
    planted = [_secret() for _ in range(6)]
    get_logger().info(
        "nested",
        request={"headers": {"Authorization": f"Bearer {planted[0]}", "X-Ok": "fine"}},
        calls=[{"params": {"code": planted[1]}}, ("jwt", {"deep": [{"api_key": planted[2]}]})],
        body={"form": {"refresh_token": planted[3], "Cookie": planted[4]}},
        note=[f"sent bearer {planted[5]}"],
    )
    line = json.loads(_assert_clean(out, planted))
    assert line["request"]["headers"]["X-Ok"] == "fine"  # only secrets go


@pytest.mark.parametrize(
    "template",
    [
        "Authorization: Bearer {s}",
        "authorization: bearer {s}",
        "BEARER {s}",
        "Authorization: OAuth {s}",
        "basic {s}",
        "GET https://app.example/oauth/callback?state=x&code={s}",
        "POST body: grant_type=authorization_code&client_secret={s}&code=x",
        '{{"access_token": "{s}", "expires_in": 0}}',
        "{{'token': '{s}'}}",
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ{s}.c2ln",
    ],
)
def test_secrets_inside_strings(out: io.StringIO, template: str) -> None:
    value = _secret()
    get_logger().warning("call_failed", error=template.format(s=value))
    _assert_clean(out, [value])


def test_a_rendered_traceback_is_redacted(out: io.StringIO) -> None:
    planted = [_secret() for _ in range(3)]
    try:
        raise RuntimeError(
            f"Mailchimp said no to Bearer {planted[0]} (code={planted[1]}) "
            f'{{"access_token": "{planted[2]}"}}'
        )
    except RuntimeError:
        get_logger().exception("crashed")
    line = json.loads(_assert_clean(out, planted))
    assert "Traceback" in line["exception"] and "RuntimeError" in line["exception"]


def test_an_exception_object_as_a_value(out: io.StringIO) -> None:
    value = _secret()
    get_logger().error("failed", error=ValueError(f"bearer {value}"))
    _assert_clean(out, [value])


def test_standard_library_records_and_their_tracebacks(out: io.StringIO) -> None:
    planted = [_secret() for _ in range(3)]
    logging.getLogger("httpx").warning("HTTP Request: GET %s", f"https://x/?code={planted[0]}")
    try:
        raise OSError(f"Authorization: Bearer {planted[1]}")
    except OSError:
        logging.getLogger("mcsync.stdlib_test").exception("boom with token=%s", planted[2])
    text = _assert_clean(out, planted)
    assert "Traceback" in text and "OSError" in text


def test_a_handler_that_bypasses_the_root_logger_is_redacted_too(out: io.StringIO) -> None:
    """uvicorn's own logging config gives `uvicorn` a handler and stops propagation."""
    own = io.StringIO()
    logger = logging.getLogger("uvicorn.test_own_handler")
    handler = logging.StreamHandler(own)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        value = _secret()
        try:
            raise ValueError(f"client_secret={value}")
        except ValueError:
            logger.exception("failed for Bearer %s", value)
        assert value not in own.getvalue() and REDACTED in own.getvalue()
        assert "Traceback" in own.getvalue()
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


# --- issue 17, item 9: the gaps a review found, each planted -----------------------------------


class _Settings:
    """Stands for a settings object whose repr names its fields (pydantic's does)."""

    def __init__(self, url: str, keys: str) -> None:
        self.url, self.keys = url, keys

    def __repr__(self) -> str:
        return f"Settings(database_url={self.url!r}, encryption_keys={self.keys!r})"


def test_a_non_string_value_is_redacted_through_its_repr(out: io.StringIO) -> None:
    password, key = _secret(), _secret()
    settings = _Settings(f"postgresql://mcsync:{password}@db.example:5432/app", key)
    get_logger().info("started", settings=settings, count=3, ratio=0.5, on=True, none=None)
    line = json.loads(_assert_clean(out, [password, key]))
    assert "db.example" in line["settings"]  # only the secret goes
    assert (line["count"], line["ratio"], line["on"], line["none"]) == (3, 0.5, True, None)


@pytest.mark.parametrize(
    "template",
    [
        "MCSYNC_ENCRYPTION_KEYS={v}",
        "export MAILCHIMP_CLIENT_SECRET={v}",
        "DATABASE_PASSWORD='{v} with spaces'",
        'JWT_SECRET="{v} quoted"',
        "oauth_token={v}",
        "x-api-key: {v}",
        "X-Api-Key={v}",
        "{{'oauth_token': '{v}'}}",
    ],
)
def test_key_value_text_with_any_secret_key_name(out: io.StringIO, template: str) -> None:
    value = _secret()
    get_logger().info("env", line=template.format(v=value))
    _assert_clean(out, [value])


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://mcsync_worker:{v}@db.example:5432/app",
        "postgres://u:{v}@localhost/app?sslmode=require",
        "redis://:{v}@cache:6379/0",
        "https://user:{v}@example.com/path",
    ],
)
def test_a_dsn_password_in_text_and_in_a_traceback(out: io.StringIO, dsn: str) -> None:
    value = _secret()
    url = dsn.format(v=value)
    get_logger().info("connecting", target=f"connecting to {url}")
    try:
        raise ConnectionError(f"could not connect to {url}")
    except ConnectionError:
        get_logger().exception("failed")
        logging.getLogger("psycopg").exception("failed too")
    text = _assert_clean(out, [value])
    assert "Traceback" in text


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_bytes_values_and_their_reprs(out: io.StringIO, kind: type) -> None:
    value = _secret()
    body = f"grant_type=authorization_code&code={value}&client_secret={value}".encode()
    get_logger().info("sent", body=kind(body), nested={"raw": [kind(body)]})
    get_logger().info("sent", text=repr(body))  # a bytes repr inside a string
    _assert_clean(out, [value])


@pytest.mark.parametrize("key", ["oauth_token", "x-api-key", "X-Api-Key", "mcsync_encryption_keys"])
def test_prefixed_secret_key_names(out: io.StringIO, key: str) -> None:
    value = _secret()
    get_logger().info("event", **{key: value}, headers={key: value})
    line = json.loads(_assert_clean(out, [value]))
    assert line[key] == REDACTED and line["headers"][key] == REDACTED


@pytest.mark.parametrize(
    "text",
    [
        "token: abc def",
        "token_undecryptable: a stored token cannot be decrypted",
        "MCSYNC_ENCRYPTION_KEYS=abc,def and more",
        "password=hunter2&next=1",
        '{"secret": "s3cret value"}',
        "Authorization: Bearer abc.def",
    ],
)
def test_redacting_twice_reads_the_same(text: str) -> None:
    """Text is stored redacted and redacted again when shown (the operator's page): the second
    pass must not take `[redacted]` for a value (it showed `[redacted]]`)."""
    once = redact_text(text)
    assert REDACTED in once
    assert redact_text(once) == once


def test_no_log_line_names_an_email_address() -> None:
    """The app's contacts are people: an address in any logged text (a Mailchimp error's
    detail, a worker's pause reason) is replaced, and the operator's page masks its own way."""
    from mcsync.admin_store import shown

    said = "ana.silva@clientmail.io looks fake or invalid, please enter a real email address."
    assert redact_text(said) == "[email] looks fake or invalid, please enter a real email address."
    assert redact_text(redact_text(said)) == redact_text(said)
    assert shown(said).startswith("a***@clientmail.io looks fake")  # type: ignore[union-attr]
    # A DSN's password is still cut out first; its host stays readable.
    assert redact_text("postgres://app:hunter2@db.internal/app") == (
        "postgres://app:[redacted]@db.internal/app"
    )
