"""The compose stand-in speaks TLS like Neon's endpoints: certificates from a local CA made on first `up`, the
pooler requiring TLS of its clients, the database serving it, and the app given Neon-shaped URLs that verify."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from cryptography import x509

from tests.test_compose import app_settings, config  # noqa: F401 - the resolved compose file, as a fixture


def mounts(service: dict) -> dict[str, str]:
    return {volume["target"]: volume["source"] for volume in service.get("volumes", [])}


def test_a_local_ca_and_a_server_certificate_for_db_and_pooler_are_made_once(config):  # noqa: F811
    tls = config["services"]["tls"]
    script = " ".join(tls["command"])
    assert "if [ ! -s server.crt ]" in script  # kept across `up`s, in the `tls` volume
    assert "subjectAltName=DNS:db,DNS:pooler" in script and "CA:TRUE" in script
    assert mounts(tls) == {"/tls": "tls"} and "tls" in config["volumes"]


def test_the_pooler_requires_tls_and_checks_the_database(config):  # noqa: F811
    services = config["services"]
    pooler = services["pooler"]["environment"]
    assert pooler["CLIENT_TLS_SSLMODE"] == "require"
    assert (pooler["CLIENT_TLS_CERT_FILE"], pooler["CLIENT_TLS_KEY_FILE"]) == ("/tls/server.crt", "/tls/pooler.key")
    assert (pooler["SERVER_TLS_SSLMODE"], pooler["SERVER_TLS_CA_FILE"]) == ("verify-full", "/tls/ca.crt")
    assert "PGSSLMODE=require" in " ".join(services["pooler"]["healthcheck"]["test"])
    db = services["db"]
    assert {"ssl=on", "ssl_cert_file=/tls/server.crt", "ssl_key_file=/tls/db.key"} <= set(db["command"])
    assert db["depends_on"]["tls"]["condition"] == "service_completed_successfully"
    for name in ("db", "pooler", "migrate", "api"):
        assert mounts(services[name])["/tls"] == "tls", name


def test_the_app_gets_neon_shaped_urls_that_verify_the_local_ca(config):  # noqa: F811
    for name in ("migrate", "api"):
        environment = config["services"][name]["environment"]
        assert environment["SSL_CERT_FILE"] == "/tls/ca.crt"
        for variable in ("DATABASE_URL", "DATABASE_URL_DIRECT"):
            assert environment[variable].endswith("?sslmode=require&channel_binding=require"), (name, variable)
        settings = app_settings(environment)
        assert settings.database.tls.sslmode == settings.database_direct.tls.sslmode == "verify-full"


def test_the_certificate_script_makes_a_chain_python_verifies_for_both_hosts(config, tmp_path):  # noqa: F811
    """The generating half of the `tls` service's script, run here with this machine's openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl on this machine (Debian: apt-get install openssl)")
    script = config["services"]["tls"]["command"][0]
    generate = script[: script.index("\nfi\n") + 4].replace("cd /tls", f"cd {tmp_path}")
    subprocess.run(["sh", "-ec", generate], check=True, capture_output=True)
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", tmp_path / "ca.crt", "-verify_hostname", "pooler", tmp_path / "server.crt"],
        capture_output=True,
        text=True,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    names = x509.load_pem_x509_certificate((tmp_path / "server.crt").read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert {"db", "pooler", "localhost"} <= set(names.value.get_values_for_type(x509.DNSName))
