"""Settings: URL normalisation (Neon URLs pasted as Neon shows them), secret checks and masking."""

import subprocess
import sys

import pytest
from pydantic import ValidationError

from app.config import (
    DEV_SECRET_KEY,
    DatabaseUrlError,
    Environment,
    Settings,
    direct_url_for,
    normalize_database_url,
)
from app.tls import TlsPolicy

NEON_POOLED = (
    "postgresql://alex:AbC123dEf@ep-cool-darkness-123456-pooler.us-east-2.aws.neon.tech/neondb"
    "?sslmode=require&channel_binding=require"
)


def test_neon_pooled_url_pasted_unchanged_is_usable_by_asyncpg():
    target = normalize_database_url(NEON_POOLED)
    assert target.url.drivername == "postgresql+asyncpg"
    assert target.url.host == "ep-cool-darkness-123456-pooler.us-east-2.aws.neon.tech"
    assert target.url.database == "neondb"
    assert dict(target.url.query) == {}  # nothing asyncpg.connect() would reject
    # channel_binding=require, which asyncpg cannot do, is kept as verify-full (tests/test_tls_config.py).
    assert target.tls == TlsPolicy("verify-full", None, direct=False, channel_binding=True)
    assert target.behind_pooler is True


@pytest.mark.parametrize(
    "raw",
    [
        "postgres://u:p@h:5432/d",
        "postgresql://u:p@h:5432/d",
        "postgresql+asyncpg://u:p@h:5432/d",
        "postgresql+psycopg2://u:p@h:5432/d",
        "  postgresql://u:p@h:5432/d  ",
    ],
)
def test_every_postgres_scheme_becomes_asyncpg(raw):
    target = normalize_database_url(raw)
    assert target.url.render_as_string(hide_password=False) == "postgresql+asyncpg://u:p@h:5432/d"
    assert target.behind_pooler is False


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("sslmode=disable", TlsPolicy("disable")),
        ("sslmode=verify-full", TlsPolicy("verify-full")),
        ("sslmode=require&sslnegotiation=direct", TlsPolicy("require", direct=True)),
        ("channel_binding=require&connect_timeout=10&application_name=x", TlsPolicy("verify-full", None, False, True)),
        ("options=endpoint%3Dep-cool-darkness-123456", TlsPolicy()),
    ],
)
def test_libpq_parameters_are_translated_or_dropped(query, expected):
    target = normalize_database_url(f"postgresql://u:p@h/d?{query}")
    assert target.tls == expected
    assert dict(target.url.query) == {}


def test_pooler_can_be_forced_for_other_poolers():
    assert normalize_database_url("postgresql://u:p@pgbouncer.internal:6432/d", force_pooler=True).behind_pooler


def test_percent_encoded_password_survives():
    target = normalize_database_url("postgresql://u:p%40ss%2Fw0rd@h/d")
    assert target.url.password == "p@ss/w0rd"
    assert "p%40ss%2Fw0rd" in target.libpq_url


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "DATABASE_URL is empty"),
        ("mysql://u:s3cr3t-pw@h/d", "must start with postgresql://"),
        ("u:s3cr3t-pw@h/d", "must start with postgresql://"),
        ("postgresql://u:s3cr3t-pw@h:notaport/d", "not a valid URL"),
        ("postgresql://u:s3cr3t-pw@h:99999/d", "not a valid URL"),
        ("postgresql://u:s3cr3t-pw@/d", "no host"),
        ("postgresql://u:s3cr3t-pw@h", "no database name"),
        ("postgresql://u:s3cr3t-pw@h/d?sslmode=sometimes", "sslmode='sometimes' is not one of"),
        ("postgresql://u:s3cr3t-pw@h/d?frobnicate=1", "frobnicate"),
    ],
)
def test_malformed_urls_name_the_variable_and_hide_the_password(raw, message):
    with pytest.raises(DatabaseUrlError) as caught:
        normalize_database_url(raw, variable="DATABASE_URL")
    assert message in str(caught.value)
    assert "DATABASE_URL" in str(caught.value)
    assert "s3cr3t-pw" not in str(caught.value)


def test_direct_url_is_the_pooled_host_without_pooler():
    assert direct_url_for(NEON_POOLED) == NEON_POOLED.replace("-pooler", "")
    assert direct_url_for("postgresql://u:p@localhost:5432/d") == "postgresql://u:p@localhost:5432/d"


def test_settings_derive_the_direct_url(monkeypatch):
    monkeypatch.delenv("DATABASE_URL_DIRECT", raising=False)
    settings = Settings(_env_file=None, DATABASE_URL=NEON_POOLED)
    assert settings.database.behind_pooler
    assert settings.database_direct.url.host == "ep-cool-darkness-123456.us-east-2.aws.neon.tech"
    assert not settings.database_direct.behind_pooler
    explicit = Settings(_env_file=None, DATABASE_URL=NEON_POOLED, DATABASE_URL_DIRECT="postgresql://u:p@other/d")
    assert explicit.database_direct.url.host == "other"


def test_printing_settings_never_shows_secrets():
    settings = Settings(
        _env_file=None, DATABASE_URL=NEON_POOLED, SECRET_KEY="k" * 40, ENVIRONMENT=Environment.production
    )
    for rendering in (
        repr(settings),
        str(settings),
        str(settings.model_dump()),
        repr(settings.database),
        settings.database.safe_url,
    ):
        assert "AbC123dEf" not in rendering
        assert "k" * 40 not in rendering


@pytest.mark.parametrize("key", [None, "changethis", "secret", "short-key"])
def test_production_refuses_missing_or_placeholder_secret_key(key):
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings(_env_file=None, ENVIRONMENT="production", DATABASE_URL=NEON_POOLED, SECRET_KEY=key)


def test_production_requires_a_database_url(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(ValidationError, match="DATABASE_URL is required"):
        Settings(_env_file=None, ENVIRONMENT="production", SECRET_KEY="k" * 40)


@pytest.mark.parametrize("environment", ["production", "local"])
def test_cheap_password_hashing_is_refused_outside_the_test_environment(monkeypatch, environment):
    monkeypatch.setenv("FAST_PASSWORD_HASHING", "true")
    with pytest.raises(ValidationError, match="FAST_PASSWORD_HASHING .* only allowed with ENVIRONMENT=test"):
        Settings(_env_file=None, ENVIRONMENT=environment, DATABASE_URL=NEON_POOLED, SECRET_KEY="k" * 40)
    assert Settings(_env_file=None, ENVIRONMENT="test").FAST_PASSWORD_HASHING is True
    monkeypatch.delenv("FAST_PASSWORD_HASHING")
    assert Settings(_env_file=None, ENVIRONMENT=environment, DATABASE_URL=NEON_POOLED, SECRET_KEY="k" * 40)


def test_local_and_test_accept_the_development_defaults():
    for environment in ("local", "test"):
        assert Settings(_env_file=None, ENVIRONMENT=environment).secret_key


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('["https://a.example", "https://b.example"]', ["https://a.example", "https://b.example"]),
        ("https://a.example, https://b.example", ["https://a.example", "https://b.example"]),
        ("", []),
    ],
)
def test_allowed_origins_accept_json_or_commas(monkeypatch, value, expected):
    monkeypatch.setenv("ALLOWED_ORIGINS", value)
    assert expected == Settings(_env_file=None).ALLOWED_ORIGINS


@pytest.mark.parametrize("timeout", ["0", "120", "-1"])
def test_connect_timeout_is_bounded(timeout):
    with pytest.raises(ValidationError, match="DB_CONNECT_TIMEOUT"):
        Settings(_env_file=None, DB_CONNECT_TIMEOUT=timeout)


def _import_app(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import app.main, app.db; print(app.db.engine.url)"],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_malformed_url_stops_startup_with_a_clear_message_and_no_password():
    result = _import_app({"DATABASE_URL": "postgresql://user:hunter2-secret@host:badport/db"})
    assert result.returncode != 0
    assert "Invalid configuration: DATABASE_URL is not a valid URL" in result.stderr
    assert "hunter2-secret" not in result.stderr + result.stdout


def test_importing_the_app_with_an_unreachable_host_does_no_io():
    result = _import_app({"DATABASE_URL": "postgresql://u:p@db.invalid:5432/d?sslmode=require"})
    assert result.returncode == 0, result.stderr
    # The engine's driver is app.db_driver's subclass of SQLAlchemy's asyncpg dialect.
    assert result.stdout.strip() == "postgresql+taskapi_asyncpg://u:***@db.invalid:5432/d"


def test_empty_values_as_in_env_example_mean_the_defaults(monkeypatch, tmp_path):
    from tests.conftest import ROOT

    for name in ("DATABASE_URL", "DATABASE_URL_DIRECT", "SECRET_KEY", "ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text((ROOT / ".env.example").read_text())
    settings = Settings(_env_file=env_file)
    assert settings.database.url.host == "127.0.0.1"  # the embedded default, not "DATABASE_URL is empty"
    assert settings.secret_key == DEV_SECRET_KEY  # not an empty signing key
    assert settings.DB_POOL == "auto"  # a copied .env.example keeps the default, not a pinned mode


def test_production_engine_keeps_bound_parameters_out_of_logs_and_errors():
    from app.db import create_engine

    production = Settings(_env_file=None, ENVIRONMENT="production", DATABASE_URL=NEON_POOLED, SECRET_KEY="k" * 40)
    assert create_engine(production.database, production).sync_engine.hide_parameters is True
    local = Settings(_env_file=None, ENVIRONMENT="local")
    assert create_engine(local.database, local).sync_engine.hide_parameters is False
