"""TLS through a stand-in that speaks it like Neon's endpoint: a real PgBouncer that requires TLS of its clients
(certificate from a local CA), in front of the test PostgreSQL, and two men in the middle: a PgBouncer with a
self-signed certificate for the same host, and one with a certificate from the right CA for another host.

The system trust store is pointed at the local CA with SSL_CERT_FILE, as OpenSSL reads it; forms that name a CA
file do without it. Direct TLS (`sslnegotiation=direct`), which neither PgBouncer here speaks, goes through
scripts/tls_terminator.py, which answers it as PostgreSQL 17 and Neon's proxy do.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from app.config import normalize_database_url, settings
from app.db import connect_to, create_engine, open_connection
from app.db_faults import ServerCertificateUntrusted
from app.dev.certificates import KeyPair, ensure_local_tls, issue, self_signed
from scripts.tls_terminator import TlsTerminator
from tests.aws_lambda.support import FakeContext, adapt, response_json
from tests.pooler import pgbouncer as pgb
from tests.pooler.conftest import require_binary
from tests.support.api import make_account
from tests.support.outage import stranger_headers, use_engine
from tests.support.requirements import missing

NEON_DEFAULT = "sslmode=require&channel_binding=require"
# Forms that check the server against the system trust store (here: SSL_CERT_FILE = the local CA).
SYSTEM_STORE_FORMS = [
    NEON_DEFAULT,
    "sslmode=verify-full",
    "sslmode=verify-ca",
    "sslrootcert=system",
    "sslmode=verify-full&sslrootcert=system",
    "sslmode=prefer&channel_binding=require",
]
# Forms that name the CA file ({ca}); the system store does not trust the local CA in these tests.
CA_FILE_FORMS = [
    "sslrootcert={ca}",
    "sslmode=require&sslrootcert={ca}",
    "sslmode=verify-full&sslrootcert={ca}",
    f"{NEON_DEFAULT}&sslrootcert={{ca}}",
]
VERIFYING_FORMS = SYSTEM_STORE_FORMS + CA_FILE_FORMS
UNCHECKED_FORMS = ["sslmode=require", "sslmode=prefer", ""]
V2_EVENT = "powertools__apiGatewayProxyV2Event.json"  # a real API Gateway HTTP API (2.0) event
DIRECT_FORMS = [f"{NEON_DEFAULT}&sslnegotiation=direct", "sslmode=verify-full&sslnegotiation=direct&sslrootcert={ca}"]


@dataclass
class Certificates:
    ca: KeyPair
    server: KeyPair  # from the CA, for localhost and 127.0.0.1
    mitm: KeyPair  # self-signed, for the same names
    other_host: KeyPair  # from the CA, for another name


@dataclass
class StandIns:
    genuine: pgb.PgBouncer
    mitm: pgb.PgBouncer
    other_host: pgb.PgBouncer


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> Certificates:
    folder = tmp_path_factory.mktemp("tls")
    ca, server = ensure_local_tls(folder, ("localhost", "127.0.0.1"))
    mitm = self_signed(folder, "mitm", ("localhost", "127.0.0.1"))
    other = issue(ca, folder, "other-host", ("db.elsewhere.example",))
    return Certificates(ca, server, mitm, other)


@pytest.fixture(scope="module")
def stand_ins(certificates, database_url):
    binary = require_binary()
    started = [
        pgb.start(database_url, binary=binary, auth_type="md5", tls=pair)
        for pair in (certificates.server, certificates.mitm, certificates.other_host)
    ]
    try:
        yield StandIns(*started)
    finally:
        for bouncer in started:
            bouncer.stop()


@pytest.fixture
def trust_local_ca(monkeypatch, certificates):
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates.ca.cert))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


def url_for(bouncer_url: str, form: str, certificates: Certificates, host: str = "localhost") -> str:
    url = make_url(bouncer_url).set(host=host).render_as_string(hide_password=False)
    query = form.format(ca=certificates.ca.cert)
    return f"{url}?{query}" if query else url


async def select_one(url: str) -> int:
    connection = await connect_to(normalize_database_url(url), settings)
    try:
        return await connection.fetchval("SELECT 1")
    finally:
        await connection.close()


async def refusal(url: str) -> ServerCertificateUntrusted:
    """What the app's connector (retries and all) raises for `url`."""
    engine = create_engine(normalize_database_url(url), settings)
    try:
        with pytest.raises(ServerCertificateUntrusted) as caught:
            await open_connection(engine)
    finally:
        await engine.dispose()
    return caught.value


@pytest.mark.parametrize("form", SYSTEM_STORE_FORMS + UNCHECKED_FORMS)
async def test_every_url_form_connects_to_the_stand_in(form, stand_ins, certificates, trust_local_ca):
    assert await select_one(url_for(stand_ins.genuine.url(), form, certificates)) == 1


@pytest.mark.parametrize("form", CA_FILE_FORMS)
async def test_a_named_ca_file_is_what_is_trusted(form, stand_ins, certificates, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates.mitm.cert))  # the system store trusts someone else
    assert await select_one(url_for(stand_ins.genuine.url(), form, certificates)) == 1


async def test_host_names_are_checked_for_ip_addresses_too(stand_ins, certificates, trust_local_ca):
    assert await select_one(url_for(stand_ins.genuine.url(), "sslmode=verify-full", certificates, "127.0.0.1")) == 1


async def test_the_stand_in_refuses_plaintext(stand_ins, certificates):
    with pytest.raises(Exception, match="SSL required"):
        await select_one(url_for(stand_ins.genuine.url(), "sslmode=disable", certificates))


@pytest.mark.parametrize("form", VERIFYING_FORMS)
async def test_every_verifying_form_refuses_a_self_signed_server(form, stand_ins, certificates, trust_local_ca):
    refused = await refusal(url_for(stand_ins.mitm.url(), form, certificates))
    assert refused.attempts == 1  # lasting: no retry burns the connect timeout
    assert str(refused).startswith("certificate verify failed for host localhost: ")
    assert "self-signed" in refused.reason or "self signed" in refused.reason


@pytest.mark.parametrize("form", VERIFYING_FORMS)
async def test_forms_that_check_the_host_refuse_a_certificate_for_another_host(
    form, stand_ins, certificates, trust_local_ca
):
    url = url_for(stand_ins.other_host.url(), form, certificates)
    if normalize_database_url(url).tls.sslmode == "verify-ca":
        # libpq's verify-ca checks the chain only: the right CA's certificate for another host passes.
        assert await select_one(url) == 1
        return
    refused = await refusal(url)
    assert refused.attempts == 1
    assert "Hostname mismatch" in refused.reason or "IP address mismatch" in refused.reason


async def test_require_alone_encrypts_without_checking_as_libpq_does(stand_ins, certificates, trust_local_ca):
    assert await select_one(url_for(stand_ins.mitm.url(), "sslmode=require", certificates)) == 1


async def test_the_api_answers_503_and_says_why_while_the_server_is_not_trusted(
    client, monkeypatch, stand_ins, certificates, trust_local_ca, caplog
):
    use_engine(monkeypatch, url_for(stand_ins.mitm.url(), NEON_DEFAULT, certificates), pooler=True)
    with caplog.at_level(logging.INFO):
        tasks = await client.get("/api/v1/tasks", headers=stranger_headers())
        health = await client.get("/api/v1/health/db")
    assert tasks.status_code == 503 and tasks.headers["Retry-After"]
    assert tasks.json()["detail"].startswith("TLS certificate not trusted")
    assert health.status_code == 503 and "TLS certificate not trusted" in health.json()["reason"]
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "certificate verify failed for host localhost" in logged
    assert "BEGIN CERTIFICATE" not in logged and "localhost" not in tasks.text + health.text

    use_engine(monkeypatch, url_for(stand_ins.genuine.url(), NEON_DEFAULT, certificates), pooler=True)
    assert (await client.get("/api/v1/health/db")).status_code == 200


async def test_channel_binding_is_said_once_in_the_log_never_with_the_password(
    monkeypatch, stand_ins, certificates, trust_local_ca, caplog
):
    from app.tls import _build_context

    _build_context.cache_clear()
    url = url_for(stand_ins.genuine.url(), NEON_DEFAULT, certificates)
    with caplog.at_level(logging.INFO, logger="app.tls"):
        assert await select_one(url) == 1
        assert await select_one(url) == 1
    lines = [record.getMessage() for record in caplog.records if record.name == "app.tls"]
    assert len(lines) == 1 and "channel_binding=require" in lines[0] and "system trust store" in lines[0]
    assert stand_ins.genuine.password not in lines[0]


@pytest.fixture(scope="module")
def direct_fronts(certificates, database_url):
    upstream = make_url(database_url)
    fronts = [
        TlsTerminator((upstream.host or "127.0.0.1", upstream.port or 5432), pair).start()
        for pair in (certificates.server, certificates.mitm)
    ]
    yield fronts
    for front in fronts:
        front.stop()


@pytest.mark.parametrize("form", DIRECT_FORMS)
async def test_direct_tls_keeps_the_checks(form, direct_fronts, database_url, certificates, trust_local_ca):
    genuine, mitm = direct_fronts
    base = make_url(database_url)
    before = genuine.direct_connections
    assert await select_one(url_for(base.set(port=genuine.port).render_as_string(False), form, certificates)) == 1
    assert genuine.direct_connections == before + 1  # no SSLRequest: TLS from the first byte
    refused = await refusal(url_for(base.set(port=mitm.port).render_as_string(False), form, certificates))
    assert refused.attempts == 1


def libpq_psql() -> str:
    """Debian's psql (libpq built with OpenSSL); the embedded wheel's has no TLS."""
    found = shutil.which("psql", path="/usr/bin:/usr/local/bin")
    # Debian's /usr/bin/psql is a wrapper that exists without any client installed.
    if found is None or subprocess.run([found, "--version"], capture_output=True).returncode != 0:
        missing("no psql with TLS support (Debian: apt-get install postgresql-client)", ci=".ci/run installs it")
    return found


@pytest.mark.parametrize("form", ["sslrootcert=system", "sslmode=verify-ca", "sslmode=verify-full&sslrootcert={ca}"])
def test_libpq_tools_get_the_same_checks(form, stand_ins, certificates, trust_local_ca):
    psql = libpq_psql()

    def run(bouncer: pgb.PgBouncer) -> subprocess.CompletedProcess[str]:
        target = normalize_database_url(url_for(bouncer.url(), form, certificates))
        env = {**os.environ, "PGCONNECT_TIMEOUT": "5", "HOME": str(Path(certificates.ca.cert).parent)}
        return subprocess.run(
            [psql, "-X", "-tA", "-c", "SELECT 1", target.libpq_url], capture_output=True, text=True, env=env
        )

    genuine = run(stand_ins.genuine)
    assert genuine.returncode == 0 and genuine.stdout.strip() == "1", genuine.stderr
    refused = run(stand_ins.mitm)
    assert refused.returncode != 0 and "certificate verify failed" in refused.stderr


@pytest.fixture(scope="module")
def lambda_thread():
    """The 'Lambda' thread: its own event loop, kept across invocations, as Mangum keeps it on Lambda."""
    executor = ThreadPoolExecutor(1, initializer=lambda: asyncio.set_event_loop(asyncio.new_event_loop()))
    yield executor
    executor.shutdown()


async def invoke(lambda_thread, event: dict) -> dict:
    from app.handler import handler

    return await asyncio.get_running_loop().run_in_executor(lambda_thread, handler, event, FakeContext())


async def test_through_the_lambda_handler_neons_url_serves_the_genuine_server_and_refuses_the_mitm(
    lambda_thread, db, monkeypatch, stand_ins, certificates, trust_local_ca, leak_watch
):
    account = await make_account(db)
    tasks = adapt(V2_EVENT, "GET", "/api/v1/tasks", headers=account.headers)
    health = adapt(V2_EVENT, "GET", "/api/v1/health/db")

    use_engine(monkeypatch, url_for(stand_ins.genuine.url(), NEON_DEFAULT, certificates), pooler=True)
    served = await invoke(lambda_thread, tasks)
    assert served["statusCode"] == 200 and response_json(served) == {"items": [], "next_cursor": None}
    assert (await invoke(lambda_thread, health))["statusCode"] == 200

    use_engine(monkeypatch, url_for(stand_ins.mitm.url(), NEON_DEFAULT, certificates), pooler=True)
    refused, unhealthy = await invoke(lambda_thread, tasks), await invoke(lambda_thread, health)
    assert refused["statusCode"] == 503 and response_json(refused)["detail"].startswith("TLS certificate not trusted")
    assert unhealthy["statusCode"] == 503 and "TLS certificate not trusted" in response_json(unhealthy)["reason"]
    for response in (served, refused, unhealthy):
        leak_watch.scan("the Lambda response", json.dumps(response), tokens=False)


def test_migrations_follow_the_same_rules(direct_fronts, database_url, certificates, trust_local_ca):
    """`alembic current` over a Neon-shaped DATABASE_URL_DIRECT (a direct endpoint: PostgreSQL behind TLS, as
    Neon's proxy fronts it): the genuine server answers, the man in the middle is refused."""
    from tests.conftest import ROOT

    base = make_url(database_url)

    def alembic_current(front: TlsTerminator) -> subprocess.CompletedProcess[str]:
        url = url_for(base.set(port=front.port).render_as_string(False), NEON_DEFAULT, certificates)
        env = {**os.environ, "DATABASE_URL": url, "DATABASE_URL_DIRECT": url}
        return subprocess.run(
            [sys.executable, "scripts/alembic_cli.py", "current"], cwd=ROOT, env=env, capture_output=True, text=True
        )

    genuine_front, mitm_front = direct_fronts
    genuine = alembic_current(genuine_front)
    assert genuine.returncode == 0 and "(head)" in genuine.stdout, genuine.stderr
    refused = alembic_current(mitm_front)
    assert refused.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in refused.stderr
    assert base.password not in refused.stderr + refused.stdout
