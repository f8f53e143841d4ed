"""The URL's TLS parameters, resolved at startup: what each form means, and the forms that stop startup."""

from __future__ import annotations

import ssl
import subprocess
import sys

import pytest
from pydantic import ValidationError

from app.config import DatabaseUrlError, Settings, normalize_database_url
from app.tls import TlsPolicy, client_context, is_loopback, policy_from_params, system_ca_file

NEON = "postgresql://alex:AbC123dEf@ep-cool-darkness-123456-pooler.us-east-2.aws.neon.tech/neondb"


@pytest.fixture
def ca_file(tmp_path):
    from app.dev.certificates import create_ca

    return str(create_ca(tmp_path).cert)


@pytest.mark.parametrize(
    ("query", "sslmode", "system_store"),
    [
        ("sslmode=require&channel_binding=require", "verify-full", True),  # Neon's default
        ("channel_binding=require", "verify-full", True),
        ("sslmode=verify-ca", "verify-ca", True),
        ("sslmode=verify-full", "verify-full", True),
        ("sslrootcert=system", "verify-full", True),
        ("sslmode=verify-full&sslrootcert=system", "verify-full", True),
        ("sslmode=require", "require", False),
        ("sslmode=require&channel_binding=prefer", "require", False),
        ("sslmode=require&channel_binding=disable", "require", False),
        ("", None, False),
    ],
)
def test_what_each_form_checks(query, sslmode, system_store):
    policy = normalize_database_url(f"{NEON}?{query}").tls
    assert policy.sslmode == sslmode
    assert policy.root_cert is None
    assert policy.verifies == system_store


def test_a_ca_file_is_checked_and_makes_require_check_the_chain(ca_file):
    assert policy_from_params({"sslrootcert": ca_file}) == TlsPolicy("verify-ca", ca_file)
    assert policy_from_params({"sslmode": "require", "sslrootcert": ca_file}) == TlsPolicy("verify-ca", ca_file)
    assert policy_from_params({"sslmode": "verify-full", "sslrootcert": ca_file}).sslmode == "verify-full"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("sslmode=require&sslrootcert=system", "sslrootcert=system needs sslmode=verify-full"),
        ("sslmode=verify-ca&sslrootcert=system", "sslrootcert=system needs sslmode=verify-full"),
        ("sslrootcert=/nonexistent/root.crt", "sslrootcert='/nonexistent/root.crt' cannot be read"),
        ("sslrootcert=/etc/hostname", "holds no PEM certificate"),
        ("sslmode=disable&channel_binding=require", "channel_binding=require needs TLS"),
        ("channel_binding=always", "channel_binding='always' is not one of"),
        ("sslnegotiation=direct", "sslnegotiation=direct needs sslmode=require"),
        ("sslmode=prefer&sslnegotiation=direct", "sslnegotiation=direct needs sslmode=require"),
        ("sslmode=require&sslnegotiation=fast", "sslnegotiation='fast' is not one of"),
        ("sslmode=sometimes", "sslmode='sometimes' is not one of"),
        ("sslcert=client.crt", "client certificate"),
    ],
)
@pytest.mark.parametrize("variable", ["DATABASE_URL", "DATABASE_URL_DIRECT"])
def test_bad_tls_parameters_name_the_variable_and_the_parameter(query, message, variable):
    with pytest.raises(DatabaseUrlError) as caught:
        normalize_database_url(f"{NEON}?{query}", variable=variable)
    assert str(caught.value).startswith(f"{variable}: ")
    assert message in str(caught.value)
    assert "AbC123dEf" not in str(caught.value)


def test_a_ca_file_beside_a_mode_that_never_checks_is_refused(ca_file):
    with pytest.raises(DatabaseUrlError, match="sslmode=prefer never checks the server"):
        normalize_database_url(f"{NEON}?sslmode=prefer&sslrootcert={ca_file}")


def test_contexts_are_built_once_and_check_what_the_mode_says(monkeypatch, ca_file):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    full, chain, unchecked = TlsPolicy("verify-full"), TlsPolicy("verify-ca", ca_file), TlsPolicy("require")
    assert client_context(full) is client_context(full)
    assert (client_context(full).verify_mode, client_context(full).check_hostname) == (ssl.CERT_REQUIRED, True)
    assert (client_context(chain).verify_mode, client_context(chain).check_hostname) == (ssl.CERT_REQUIRED, False)
    assert client_context(chain).get_ca_certs()[0]["subject"] == ((("commonName", "task-api local CA"),),)
    assert client_context(unchecked).verify_mode == ssl.CERT_NONE
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)  # another trust store: another context
    assert [cert["subject"] for cert in client_context(full).get_ca_certs()] == [
        ((("commonName", "task-api local CA"),),)
    ]


def test_unchecked_modes_are_left_to_asyncpg_and_direct_tls_is_passed_on():
    assert TlsPolicy("prefer").asyncpg_args() == {"ssl": "prefer"}
    assert TlsPolicy().asyncpg_args() == {}
    args = TlsPolicy("verify-full", direct=True).asyncpg_args()
    assert isinstance(args["ssl"], ssl.SSLContext) and args["direct_tls"] is True


def test_libpq_gets_a_ca_file_it_understands_for_the_system_store(ca_file, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    assert system_ca_file() == ca_file
    neon = normalize_database_url(f"{NEON}?sslmode=require&channel_binding=require")
    assert neon.tls.libpq_params() == {"sslmode": "verify-full", "sslrootcert": ca_file, "channel_binding": "require"}
    assert "sslrootcert=" in neon.libpq_url and "channel_binding=require" in neon.libpq_url
    direct = normalize_database_url(f"{NEON}?sslmode=require&sslnegotiation=direct")
    assert direct.tls.libpq_params() == {"sslmode": "require", "sslnegotiation": "direct"}
    monkeypatch.setenv("SSL_CERT_FILE", "/nonexistent/bundle.pem")  # no bundle file: libpq 16's own word
    assert TlsPolicy("verify-full").libpq_params()["sslrootcert"] in {"system", ssl.get_default_verify_paths().cafile}


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("localhost", True), ("127.0.0.1", True), ("127.8.0.1", True), ("::1", True), ("/var/run/postgresql", True)]
    + [("10.0.0.5", False), ("db", False), ("ep-x.us-east-2.aws.neon.tech", False), ("localhost.example", False)],
)
def test_loopback_hosts(host, loopback):
    assert is_loopback(host) is loopback


def production(**values) -> Settings:
    settings = Settings(_env_file=None, ENVIRONMENT="production", SECRET_KEY="k" * 40, **values)
    settings.database  # noqa: B018
    settings.database_direct  # noqa: B018
    return settings


@pytest.mark.parametrize("query", ["", "?sslmode=disable", "?sslmode=prefer", "?sslmode=allow"])
def test_production_refuses_plaintext_to_a_remote_host(query):
    with pytest.raises(DatabaseUrlError, match="DATABASE_URL lets the connection to .* run without TLS") as caught:
        production(DATABASE_URL=NEON + query)
    assert "DB_ALLOW_INSECURE_TRANSPORT" in str(caught.value) and "AbC123dEf" not in str(caught.value)
    assert production(DATABASE_URL=NEON + query, DB_ALLOW_INSECURE_TRANSPORT=True).database.tls.sslmode in {
        None,
        "disable",
        "prefer",
        "allow",
    }


def test_production_checks_the_direct_url_too():
    with pytest.raises(DatabaseUrlError, match="DATABASE_URL_DIRECT lets the connection"):
        production(DATABASE_URL=f"{NEON}?sslmode=require", DATABASE_URL_DIRECT="postgresql://u:p@db.internal/d")


@pytest.mark.parametrize(
    "url",
    [f"{NEON}?sslmode=require", f"{NEON}?sslmode=require&channel_binding=require", f"{NEON}?channel_binding=require"]
    + ["postgresql://u:p@127.0.0.1:5432/d", "postgresql://u:p@localhost/d?sslmode=disable"],
)
def test_production_accepts_tls_or_loopback(url):
    assert production(DATABASE_URL=url).database.url.database


def test_local_runs_may_use_plaintext_anywhere():
    assert (
        Settings(_env_file=None, ENVIRONMENT="local", DATABASE_URL="postgresql://u:p@db/d").database.tls.sslmode is None
    )


def test_insecure_transport_flag_is_a_boolean():
    with pytest.raises(ValidationError, match="DB_ALLOW_INSECURE_TRANSPORT"):
        Settings(_env_file=None, DB_ALLOW_INSECURE_TRANSPORT="perhaps")


def _import_app(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = "import app.main, app.db, app.tls; print(app.tls._build_context.cache_info().currsize)"
    return subprocess.run(
        [sys.executable, "-c", code], env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DATABASE_URL": f"{NEON}?sslrootcert=/missing/ca.pem"}, "DATABASE_URL: sslrootcert='/missing/ca.pem'"),
        (
            {"DATABASE_URL": f"{NEON}?sslmode=require", "DATABASE_URL_DIRECT": f"{NEON}?sslmode=require&sslrootcert=x"},
            "DATABASE_URL_DIRECT: sslrootcert='x' cannot be read",
        ),
        (
            {"DATABASE_URL": NEON, "ENVIRONMENT": "production", "SECRET_KEY": "k" * 40},
            "DATABASE_URL lets the connection to ep-cool-darkness-123456-pooler.us-east-2.aws.neon.tech run without",
        ),
    ],
)
def test_bad_tls_settings_stop_startup_with_a_clear_message(env, message):
    result = _import_app(env)
    assert result.returncode != 0
    assert f"Invalid configuration: {message}" in result.stderr
    assert "AbC123dEf" not in result.stderr + result.stdout


def test_startup_builds_no_ssl_context():
    """Loading the trust store costs milliseconds (bench/tls.py): it waits for the first connection."""
    result = _import_app({"DATABASE_URL": f"{NEON}?sslmode=require&channel_binding=require"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"
