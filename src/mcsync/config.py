"""Settings, read from the environment (and flags, which the CLI layers on top)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from mcsync.mailchimp.endpoints import api_base

DEFAULT_API_URL = "https://{dc}.api.mailchimp.com/3.0"
DEFAULT_LOGIN_URL = "https://login.mailchimp.com"


class Settings(BaseSettings):
    """Everything mcsync reads from its environment. Names are the env variables, upper-cased."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    database_url: str = Field(default="", description="libpq URL of the app's database")
    mcsync_encryption_keys: str = Field(
        default="", description="Fernet keys, comma-separated, newest first"
    )
    mailchimp_api_url: str = Field(default=DEFAULT_API_URL, description="API base; {dc} is filled")
    mailchimp_login_url: str = Field(default=DEFAULT_LOGIN_URL)
    mailchimp_client_id: str = ""
    mailchimp_client_secret: str = ""
    mailchimp_redirect_uri: str = ""
    mcsync_app_origin: str = ""

    # Who the app's users are (mcsync.web.auth): its JWKS, its legacy shared secret, or both.
    mcsync_jwks_url: str = Field(
        default="", description="the app's JWKS (Supabase: <project>/auth/v1/.well-known/jwks.json)"
    )
    mcsync_jwt_secret: str = Field(default="", description="legacy HS256 secret of user JWTs")
    mcsync_jwt_audience: str = Field(
        default="authenticated", min_length=1, description="accepted `aud`, comma-separated"
    )
    mcsync_jwt_issuer: str = Field(default="", description="required `iss`, when set")
    mcsync_jwt_allow_anonymous: bool = Field(
        default=False, description="accept Supabase anonymous sign-ins (`is_anonymous: true`)"
    )
    mcsync_jwks_cache_seconds: float = Field(
        default=300.0, gt=0, le=3600, description="how long a fetched JWKS is trusted"
    )
    mcsync_jwks_refetch_seconds: float = Field(
        default=10.0, ge=0, le=600, description="least time between JWKS fetches on an unknown kid"
    )
    # mcsync's own secret for the OAuth state and the browser binding; derived from the
    # encryption keys when unset (never from the app's JWT secret).
    mcsync_state_secret: str = Field(
        default="", description="secret(s) signing OAuth states, comma-separated, newest first"
    )

    # Worker tuning
    mcsync_poll_interval: float = Field(default=2.0, description="seconds between polls")
    mcsync_max_in_flight: int = Field(default=8, ge=1, le=10, description="per Mailchimp account")
    mcsync_batch_threshold: int = Field(default=20, ge=1)
    mcsync_claim_size: int = Field(default=500, ge=1, le=5000, description="contacts per pass")
    mcsync_max_passes: int = Field(
        default=10, ge=1, le=50, description="passes in flight per account (bulk throughput)"
    )
    mcsync_lease_seconds: float = Field(default=60.0, gt=0)
    mcsync_http_timeout: float = Field(default=30.0, gt=0)
    mcsync_backoff_scale: float = Field(
        default=1.0,
        gt=0,
        description="multiplies every retry, throttle and probe delay (tests use 0.01)",
    )
    mcsync_metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="serve Prometheus metrics on this port"
    )
    # The operator's page (`mcsync web`'s /admin): nobody unless one of these says so.
    mcsync_operator_ids: str = Field(default="", description="operators' user ids, comma-separated")
    mcsync_operator_claim: str = Field(
        default="",
        description="JWT claim that makes an operator: app_metadata.mcsync_role=operator",
    )
    # Loopback by default: the metrics name every user id; a scraper elsewhere is a choice.
    mcsync_metrics_host: str = Field(
        default="127.0.0.1", description="the address the metrics port listens on"
    )

    def api_base(self, dc: str) -> str:
        """The API base for a connection's dc (checked: see mcsync.mailchimp.endpoints)."""
        return api_base(self.mailchimp_api_url, dc)

    @property
    def encryption_keys(self) -> list[str]:
        return [k.strip() for k in self.mcsync_encryption_keys.split(",") if k.strip()]

    @property
    def jwt_audiences(self) -> list[str]:
        return [a.strip() for a in self.mcsync_jwt_audience.split(",") if a.strip()]

    @property
    def state_secrets(self) -> list[str]:
        return [k.strip() for k in self.mcsync_state_secret.split(",") if k.strip()]


def load_settings(**overrides: object) -> Settings:
    """Environment first, then explicit overrides (CLI flags) that are not None."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**clean)  # type: ignore[arg-type]
