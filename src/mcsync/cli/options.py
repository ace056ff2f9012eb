"""One way of declaring the flags that become settings, and of building settings from them.

Every setting is an environment variable (`mcsync.config.Settings`); a flag of the same meaning
overrides it for one run. Each command is a `Command` that names the options it takes (and
declares its own flags); `settings_from` builds the settings from the environment and whichever
of those flags were given."""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from mcsync.config import Settings, load_settings
from mcsync.crypto import EncryptionKeyError, TokenCipher


@dataclass(frozen=True)
class SettingOption:
    """A flag that overrides one `Settings` field (whose upper-cased name is the env variable)."""

    flag: str
    field: str
    help: str
    type: Callable[[str], object] = str

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")


def _option(
    flag: str, field: str, help: str, type: Callable[[str], object] = str, default: str = ""
) -> SettingOption:
    where = f"env {field.upper()}" + (f"; default {default}" if default else "")
    return SettingOption(flag, field, f"{help} ({where})", type)


OPTIONS: dict[str, SettingOption] = {
    o.dest: o
    for o in (
        _option("--database-url", "database_url", "libpq URL of the app's database"),
        _option(
            "--encryption-keys",
            "mcsync_encryption_keys",
            "Fernet keys that encrypt stored tokens, comma-separated, newest first",
        ),
        _option("--api-url", "mailchimp_api_url", "Mailchimp API base; {dc} is filled in"),
        _option("--login-url", "mailchimp_login_url", "Mailchimp OAuth base"),
        _option(
            "--jwks-url",
            "mcsync_jwks_url",
            "the app's JWKS: https://<project-ref>.supabase.co/auth/v1/.well-known/jwks.json",
        ),
        _option(
            "--jwt-secret", "mcsync_jwt_secret", "legacy: the HS256 secret of the app's user JWTs"
        ),
        _option(
            "--jwt-audience",
            "mcsync_jwt_audience",
            "accepted aud of user JWTs, comma-separated",
            default="authenticated",
        ),
        _option("--jwt-issuer", "mcsync_jwt_issuer", "required iss of user JWTs (off when unset)"),
        _option(
            "--state-secret",
            "mcsync_state_secret",
            "mcsync's own secret(s) for OAuth states, newest first (else derived from the keys)",
        ),
        _option("--app-origin", "mcsync_app_origin", "origin(s) of the app that embeds the widget"),
        _option("--client-id", "mailchimp_client_id", "your registered Mailchimp app's id"),
        _option("--client-secret", "mailchimp_client_secret", "your Mailchimp app's secret"),
        _option(
            "--redirect-uri",
            "mailchimp_redirect_uri",
            "https://<where mcsync web runs>/oauth/callback, as registered with Mailchimp",
        ),
        _option(
            "--poll-interval",
            "mcsync_poll_interval",
            "seconds between polls when no NOTIFY arrives",
            float,
            "2",
        ),
        _option(
            "--max-in-flight",
            "mcsync_max_in_flight",
            "Mailchimp calls in flight per account, 1 to 10",
            int,
            "8",
        ),
        _option(
            "--metrics-port",
            "mcsync_metrics_port",
            "serve Prometheus metrics on this port",
            int,
            "off",
        ),
        _option(
            "--operator-ids",
            "mcsync_operator_ids",
            "user ids allowed on the operator page /admin, comma-separated",
        ),
        _option(
            "--operator-claim",
            "mcsync_operator_claim",
            "JWT claim that makes an operator, e.g. app_metadata.mcsync_role=operator",
        ),
        _option(
            "--metrics-host",
            "mcsync_metrics_host",
            "the address the metrics port listens on (0.0.0.0: every interface)",
            str,
            "127.0.0.1",
        ),
    )
}

# The options most commands that reach Mailchimp take.
DATABASE = ("database_url",)
MAILCHIMP = ("database_url", "encryption_keys", "api_url")


def add_setting_options(parser: argparse.ArgumentParser, names: tuple[str, ...]) -> None:
    """Declare the named setting flags on a command's parser."""
    for name in names:
        o = OPTIONS[name]
        parser.add_argument(o.flag, dest=o.dest, type=o.type, help=o.help)


def settings_from(args: argparse.Namespace) -> Settings:
    """The environment's settings, overridden by the setting flags given on the command line."""
    overrides = {o.field: getattr(args, o.dest, None) for o in OPTIONS.values()}
    try:
        return load_settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
        )
        sys.exit(f"mcsync: invalid setting: {problems}")


def require_database(settings: Settings) -> str:
    """The database URL, or exit saying how to give it."""
    if not settings.database_url:
        sys.exit("mcsync: set DATABASE_URL or pass --database-url")
    return settings.database_url


def require_cipher(settings: Settings) -> TokenCipher:
    """The token cipher, or exit saying what is wrong with the keys."""
    try:
        return TokenCipher(settings.encryption_keys)
    except EncryptionKeyError as exc:
        sys.exit(f"mcsync: {exc}")


def database_and_cipher(args: argparse.Namespace) -> tuple[Settings, TokenCipher]:
    """Settings with a database URL and a usable cipher, or exit saying what to set."""
    settings = settings_from(args)
    require_database(settings)
    return settings, require_cipher(settings)


@dataclass(frozen=True)
class Flag:
    """A command's own flag (not a setting): the arguments of `ArgumentParser.add_argument`."""

    names: tuple[str, ...]
    options: Mapping[str, Any]


def flag(*names: str, **options: Any) -> Flag:
    """Declare a flag as `parser.add_argument(*names, **options)` would."""
    return Flag(names, options)


# Flags several commands take, declared once.
USER = flag("--user-id", type=UUID, required=True, help="the app user's id")
JSON = flag("--json", action="store_true", help="machine-readable output")


def listen(port: int) -> tuple[Flag, Flag]:
    """`--host` and `--port` of a command that serves HTTP (local only unless told)."""
    return (
        flag("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"),
        flag("--port", type=int, default=port, help=f"port to listen on (default {port})"),
    )


@dataclass(frozen=True)
class Command:
    """One `mcsync` subcommand, declared: `help` is its line in `mcsync --help`, the function's
    docstring its own --help; `settings` names entries of OPTIONS, `flags` its own flags."""

    name: str
    func: Callable[[argparse.Namespace], int]
    help: str
    settings: tuple[str, ...] = ()
    flags: tuple[Flag, ...] = ()

    def register(
        self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]
    ) -> argparse.ArgumentParser:
        """Add this command's parser (setting flags first, then its own) to `subparsers`."""
        parser = subparsers.add_parser(
            self.name,
            help=self.help,
            description=inspect.cleandoc(self.func.__doc__ or self.help),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_setting_options(parser, self.settings)
        for f in self.flags:
            parser.add_argument(*f.names, **f.options)
        parser.set_defaults(func=self.func)
        return parser
