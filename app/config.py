"""Settings, read from the environment and `.env`, and the one place where database URLs are normalised.

Nothing here does I/O beyond reading `.env`, so importing it on a Lambda cold start is cheap.
"""

from __future__ import annotations

import json
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Any, NamedTuple
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from app.tls import TLS_PARAMETERS, TlsParameterError, TlsPolicy, is_loopback, policy_from_params

# Where `make dev` and the scripts run the embedded PostgreSQL (see app/dev/embedded.py). It is only a default
# for ENVIRONMENT=local; production requires DATABASE_URL.
LOCAL_DATABASE_URL = "postgresql://postgres:postgres@127.0.0.1:54329/app"

# A fixed key is fine for local runs and tests (tokens never leave the machine); production must set its own.
DEV_SECRET_KEY = "local-development-only-secret-key-not-for-production"
PLACEHOLDER_SECRETS = {"changethis", "change-me", "changeme", "secret", "your-secret-key", DEV_SECRET_KEY}
MIN_SECRET_KEY_LENGTH = 32


class Environment(StrEnum):
    local = "local"
    test = "test"
    production = "production"


class DatabaseUrlError(ValueError):
    """A database URL that cannot be used. The message names the variable and never contains the password."""


# libpq-only parameters that asyncpg would reject with a TypeError and that change nothing we promise.
# `options=endpoint%3D...` is for clients without SNI; asyncpg sends SNI. The TLS parameters are app/tls.py's.
_DROPPED_PARAMS = {
    "gssencmode",
    "gsslib",
    "krbsrvname",
    "options",
    "sslcompression",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "requirepeer",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "fallback_application_name",
    "client_encoding",
    "replication",
}
# Parameters handled by the engine itself (we set them from settings), ignored if present in the URL.
_ENGINE_OWNED_PARAMS = {"application_name", "connect_timeout"}


class DatabaseTarget(NamedTuple):
    """A normalised database URL plus the asyncpg connect arguments that cannot live in a URL.

    A NamedTuple rather than a frozen dataclass: as immutable, and half the cost to define on a cold start (a
    dataclass compiles its generated methods at import)."""

    url: URL
    tls: TlsPolicy = TlsPolicy()  # immutable, so one shared default is safe
    behind_pooler: bool = False

    def __repr__(self) -> str:  # URL's own repr already masks the password; keep it that way here
        return f"DatabaseTarget(url={self.url!r}, tls={self.tls!r}, pooler={self.behind_pooler})"

    @property
    def connect_args(self) -> dict[str, Any]:
        """`ssl` and `direct_tls` for asyncpg.connect. The SSLContext is built on first use, once per process."""
        return self.tls.asyncpg_args()

    @property
    def safe_url(self) -> str:
        """The URL with its password masked, for logs and messages."""
        return self.url.render_as_string(hide_password=True)

    @property
    def libpq_url(self) -> str:
        """A plain `postgresql://` URL for libpq tools (pg_dump, psql), password included: never log it."""
        url = self.url.set(drivername="postgresql").update_query_dict(self.tls.libpq_params())
        return url.render_as_string(hide_password=False)


def is_pooler_host(host: str | None) -> bool:
    """Neon's pooled endpoint: `-pooler` in the host's first label (ep-cool-name-123456-pooler.region...)."""
    return "-pooler" in (host or "").split(".", 1)[0]


def normalize_database_url(raw: str, *, variable: str = "DATABASE_URL", force_pooler: bool = False) -> DatabaseTarget:
    """Turn any PostgreSQL URL a user may paste (Neon's included) into one SQLAlchemy + asyncpg accept.

    - `postgres://`, `postgresql://`, `postgresql+<any driver>://` all become `postgresql+asyncpg://`;
    - the TLS parameters (`sslmode`, `sslrootcert`, `channel_binding`, `sslnegotiation`) become a TlsPolicy
      (app/tls.py), checked here: a contradiction or an unreadable CA file stops startup;
    - other libpq-only parameters (`options`, ...) are dropped; anything else unknown is refused by name;
    - a Neon `-pooler` host (or `force_pooler`) marks the target as behind a transaction pooler.
    """
    text = (raw or "").strip()
    if not text:
        raise DatabaseUrlError(f"{variable} is empty; expected postgresql://user:password@host:port/database")
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme != "postgres" and scheme != "postgresql" and not scheme.startswith("postgresql+"):
        raise DatabaseUrlError(
            f"{variable} must start with postgresql:// (or postgres://); got scheme {scheme or '(none)'!r}"
        )
    try:
        # urlsplit validates the port without echoing the URL back in its error message.
        parts = urlsplit("postgresql" + text[len(scheme) :])
        _ = parts.port
        url = make_url("postgresql" + text[len(scheme) :])
    except (ValueError, ArgumentError):
        raise DatabaseUrlError(
            f"{variable} is not a valid URL (check the host, the port and that special characters in the "
            "password are percent-encoded)"
        ) from None
    if not url.host:
        raise DatabaseUrlError(f"{variable} has no host name")
    if not url.database:
        raise DatabaseUrlError(f"{variable} has no database name (…/dbname at the end)")

    tls_params: dict[str, str] = {}
    kept: dict[str, str] = {}
    for key, value in url.query.items():
        value = value[-1] if isinstance(value, tuple) else value
        if key in TLS_PARAMETERS:
            tls_params[key] = value
        elif key == "target_session_attrs":
            kept[key] = value
        elif key in _DROPPED_PARAMS or key in _ENGINE_OWNED_PARAMS:
            continue
        elif key in {"sslcert", "sslkey", "sslpassword"}:
            raise DatabaseUrlError(f"{variable}: {key} (a client certificate) is not supported by this app")
        else:
            raise DatabaseUrlError(f"{variable} has a query parameter asyncpg does not understand: {key!r}")
    try:
        tls = policy_from_params(tls_params)
    except TlsParameterError as error:
        raise DatabaseUrlError(f"{variable}: {error}") from None

    behind_pooler = force_pooler or is_pooler_host(url.host)
    url = url.set(drivername="postgresql+asyncpg", query=kept)
    return DatabaseTarget(url=url, tls=tls, behind_pooler=behind_pooler)


def refuse_insecure_transport(target: DatabaseTarget, variable: str) -> None:
    """Production may not send the password and the data in the clear to a host beyond this machine."""
    host = target.url.host or ""
    if target.tls.encrypts or is_loopback(host):
        return
    raise DatabaseUrlError(
        f"{variable} lets the connection to {host} run without TLS (sslmode={target.tls.sslmode or 'none'}), so "
        "the password and the data could cross the network in the clear: add sslmode=verify-full (or Neon's "
        "sslmode=require&channel_binding=require), or set DB_ALLOW_INSECURE_TRANSPORT=true if the network is "
        "trusted"
    )


def direct_url_for(raw: str) -> str:
    """Neon's direct endpoint is the pooled host without `-pooler` (ep-x-pooler.region... -> ep-x.region...)."""
    scheme, sep, rest = raw.partition("://")
    if not sep:
        return raw
    userinfo, at, hostpart = rest.rpartition("@")
    host, dot, domain = hostpart.partition(".")
    if host.endswith("-pooler"):
        host = host.removesuffix("-pooler")
    return f"{scheme}{sep}{userinfo}{at}{host}{dot}{domain}"


class PoolChoice(NamedTuple):
    """How the engine keeps connections (`null`, `single` or `queue`) and why, for the log line that says so."""

    mode: str
    reason: str


def choose_pool(requested: str, target: DatabaseTarget) -> PoolChoice:
    """DB_POOL as the engine applies it: `auto` becomes `single` behind a pooler and `null` otherwise.

    Behind a transaction pooler (Neon's `-pooler` endpoint) a kept connection is one of thousands of cheap client
    slots, so each warm process keeping one turns a warm read's 7 round trips into 1. A direct endpoint allows
    ~100 sessions in all, which a fleet of warm sandboxes each holding one would exhaust: there a fresh
    connection per request is the safe choice.
    """
    if requested != "auto":
        return PoolChoice(requested, f"DB_POOL={requested} was set")
    if not target.behind_pooler:
        return PoolChoice("null", "DB_POOL=auto and the database URL is not a pooler's: a fresh connection per request")
    why = "the host is a -pooler host" if is_pooler_host(target.url.host) else "DB_POOLER=true"
    return PoolChoice("single", f"DB_POOL=auto and {why}: one connection per process, kept across requests")


class Settings(BaseSettings):
    """Every setting of the application. `repr`/`str` never show the database password or SECRET_KEY."""

    # env_ignore_empty: `.env.example` copied as it is (`DATABASE_URL=`, `SECRET_KEY=`) means "use the default",
    # not "an empty URL" or "an empty signing key".
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", env_ignore_empty=True)

    ENVIRONMENT: Environment = Environment.local
    DATABASE_URL: SecretStr | None = None
    DATABASE_URL_DIRECT: SecretStr | None = None
    DB_POOLER: bool = False
    # `auto` resolves per database target (choose_pool): `single` behind a pooler, `null` otherwise.
    DB_POOL: str = Field(default="auto", pattern="^(auto|null|queue|single)$")
    DB_ECHO: bool = False
    DB_CONNECT_TIMEOUT: float = Field(default=5.0, ge=0.5, le=20.0)
    # Keep it under API Gateway's 29 s for the API; the `migrate` function (no gateway) may allow minutes.
    DB_COMMAND_TIMEOUT: float = Field(default=15.0, ge=1.0, le=900.0)
    DB_APPLICATION_NAME: str = "task-api"
    # Production refuses a remote database URL that allows plaintext (sslmode below require); this says the
    # network between the app and the database is trusted (a private VPC link, a sidecar).
    DB_ALLOW_INSECURE_TRANSPORT: bool = False

    SECRET_KEY: SecretStr | None = None
    ALGORITHM: str = Field(default="HS256", pattern="^HS(256|384|512)$")
    ACCESS_TOKEN_EXPIRE_MINUTES: int = Field(default=60, ge=1, le=60 * 24 * 30)
    # A plain default (pydantic copies it per instance), not `default_factory=list`: pydantic reads a factory's
    # signature, and parsing a builtin's compiles tokenize's patterns, about 1% of a cold start's imports.
    ALLOWED_ORIGINS: Annotated[list[str], NoDecode] = []
    API_BASE_PATH: str = ""

    # Login and register attempts allowed per client (IP; login also per email) in each fixed window, counted
    # in PostgreSQL so the limit holds across Lambda instances. Either set to 0 turns the limit off.
    AUTH_RATE_LIMIT_ATTEMPTS: int = Field(default=10, ge=0, le=1_000_000)
    AUTH_RATE_LIMIT_WINDOW_SECONDS: int = Field(default=60, ge=0, le=24 * 3600)

    # How long an Idempotency-Key is remembered: a retry within it replays the first answer; after it, the key
    # counts as new. Expired keys are deleted by scripts/purge_idempotency_keys.py (the scheduled `purge`
    # function in serverless.yml).
    IDEMPOTENCY_KEY_TTL_HOURS: int = Field(default=24, ge=1, le=24 * 30)

    # Argon2 at 1 MiB and one pass instead of 64 MiB, 3 passes, 4 lanes: ~0.5 ms a hash instead of ~150 ms of
    # CPU. Hashes stored this way are cheap to crack, so only ENVIRONMENT=test may ask for it: the test suite,
    # which hashes hundreds of passwords (app/security.py; the tests of the hashing itself use the real cost).
    FAST_PASSWORD_HASHING: bool = False

    # Level of the root logger (app/observability.py); SQL statement logging is DB_ECHO's, not this.
    LOG_LEVEL: str = Field(default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")

    # Observability (app/metrics.py, docs/observability.md). SERVICE_NAME is the `service` of every request's
    # log lines and the metrics' dimension (Powertools' POWERTOOLS_SERVICE_NAME); METRICS_NAMESPACE the
    # CloudWatch namespace (not AWS/...). EMF_METRICS: `auto` writes the metrics for Lambda invocations only,
    # `on` everywhere (a container whose stdout reaches CloudWatch Logs), `off` never.
    SERVICE_NAME: str = Field(default="task-api", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    METRICS_NAMESPACE: str = Field(default="TaskAPI", pattern=r"^[A-Za-z0-9._/#:-][A-Za-z0-9 ._/#:-]{0,254}$")
    EMF_METRICS: str = Field(default="auto", pattern="^(auto|on|off)$")

    @field_validator("LOG_LEVEL", mode="before")
    @classmethod
    def _upper_log_level(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("METRICS_NAMESPACE")
    @classmethod
    def _not_an_aws_namespace(cls, value: str) -> str:
        if value.startswith("AWS/"):
            raise ValueError("namespaces starting with AWS/ are AWS's own; CloudWatch ignores custom metrics there")
        return value

    @field_validator("ALLOWED_ORIGINS", mode="before")
    @classmethod
    def _parse_origins(cls, value: Any) -> Any:
        """Accept a JSON list (`["https://a"]`) or a comma-separated string (`https://a, https://b`)."""
        if isinstance(value, str):
            value = value.strip()
            if value.startswith("["):
                return json.loads(value)
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @model_validator(mode="after")
    def _check_production_requirements(self) -> Settings:
        if self.FAST_PASSWORD_HASHING and self.ENVIRONMENT is not Environment.test:
            raise ValueError(
                "FAST_PASSWORD_HASHING stores password hashes that are cheap to crack: it is only allowed with "
                "ENVIRONMENT=test"
            )
        if self.ENVIRONMENT in (Environment.local, Environment.test):
            return self
        if self.DATABASE_URL is None:
            raise ValueError("DATABASE_URL is required when ENVIRONMENT=production")
        key = self.SECRET_KEY.get_secret_value() if self.SECRET_KEY else ""
        if not key:
            raise ValueError("SECRET_KEY is required when ENVIRONMENT=production (openssl rand -hex 32)")
        if key.lower() in PLACEHOLDER_SECRETS or len(key) < MIN_SECRET_KEY_LENGTH:
            raise ValueError(
                f"SECRET_KEY is a placeholder or shorter than {MIN_SECRET_KEY_LENGTH} characters; "
                "generate one with: openssl rand -hex 32"
            )
        return self

    @property
    def secret_key(self) -> str:
        return self.SECRET_KEY.get_secret_value() if self.SECRET_KEY else DEV_SECRET_KEY

    @cached_property
    def database(self) -> DatabaseTarget:
        """The app's database (the pooled endpoint on Neon). Raises DatabaseUrlError naming the variable."""
        raw = self.DATABASE_URL.get_secret_value() if self.DATABASE_URL else LOCAL_DATABASE_URL
        return self._checked(normalize_database_url(raw, variable="DATABASE_URL", force_pooler=self.DB_POOLER))

    @cached_property
    def database_direct(self) -> DatabaseTarget:
        """The direct (non-pooled) endpoint, for migrations and dumps."""
        if self.DATABASE_URL_DIRECT is not None:
            raw, variable = self.DATABASE_URL_DIRECT.get_secret_value(), "DATABASE_URL_DIRECT"
            return self._checked(normalize_database_url(raw, variable=variable), variable)
        raw = self.DATABASE_URL.get_secret_value() if self.DATABASE_URL else LOCAL_DATABASE_URL
        return self._checked(normalize_database_url(direct_url_for(raw), variable="DATABASE_URL"))

    def _checked(self, target: DatabaseTarget, variable: str = "DATABASE_URL") -> DatabaseTarget:
        if self.ENVIRONMENT is Environment.production and not self.DB_ALLOW_INSECURE_TRANSPORT:
            refuse_insecure_transport(target, variable)
        return target


def get_settings() -> Settings:
    """Build settings, turning validation errors into one readable line (and never echoing a secret)."""
    from pydantic import ValidationError

    try:
        settings = Settings()
        # Validate both URLs now, at startup, not on the first request or the first migration.
        settings.database  # noqa: B018
        settings.database_direct  # noqa: B018
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        raise SystemExit(f"Invalid configuration: {problems}") from None
    except DatabaseUrlError as exc:
        raise SystemExit(f"Invalid configuration: {exc}") from None
    return settings


settings = get_settings()
