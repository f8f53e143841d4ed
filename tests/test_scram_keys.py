"""SCRAM's salted password is derived once per process for the app's connections (app.db_driver), against the real
embedded PostgreSQL (host logins use scram-sha-256): a second login skips PBKDF2, a wrong password is still refused,
a new salt (the password set again) is a new key, and connections opened outside the app's connector are unchanged.
"""

import hashlib
import secrets

import asyncpg
import pytest
from sqlalchemy.engine import make_url

import app.db_driver
from app.config import normalize_database_url
from app.db import connect_to
from app.db_driver import scram_keys


@pytest.fixture
def derivations(monkeypatch) -> list[int]:
    """The iteration counts of every PBKDF2 actually computed (hits of the cache compute none)."""
    computed: list[int] = []
    real = hashlib.pbkdf2_hmac

    def counting(hash_name, password, salt, iterations, dklen=None):
        computed.append(iterations)
        return real(hash_name, password, salt, iterations, dklen)

    monkeypatch.setattr(hashlib, "pbkdf2_hmac", counting)
    scram_keys.forget()
    yield computed
    scram_keys.forget()


@pytest.fixture
async def role(db) -> tuple[str, str]:
    """A login role of its own (roles are shared by the test workers' databases), with a SCRAM password."""
    name, password = f"scram_{secrets.token_hex(4)}", secrets.token_urlsafe(12)
    await db.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
    try:
        stored = await db.fetchval("SELECT rolpassword FROM pg_authid WHERE rolname = $1", name)
        assert stored.startswith("SCRAM-SHA-256$4096:")
        yield name, password
    finally:
        await db.execute(f"DROP ROLE {name}")


def target_for(database_url: str, user: str, password: str):
    return normalize_database_url(
        make_url(database_url).set(username=user, password=password).render_as_string(hide_password=False)
    )


async def login(database_url: str, user: str, password: str) -> None:
    connection = await connect_to(target_for(database_url, user, password))
    try:
        assert await connection.fetchval("SELECT current_user") == user
    finally:
        connection.terminate()


async def test_a_second_login_derives_no_key(database_url, role, derivations):
    user, password = role
    await login(database_url, user, password)
    assert derivations == [4096]  # the first login paid SCRAM's PBKDF2
    await login(database_url, user, password)
    await login(database_url, user, password)
    assert derivations == [4096]


async def test_a_wrong_password_is_still_refused(database_url, role, derivations):
    user, password = role
    await login(database_url, user, password)
    with pytest.raises(asyncpg.InvalidPasswordError):
        await login(database_url, user, password + "x")
    with pytest.raises(asyncpg.InvalidPasswordError):
        await login(database_url, user, password + "x")  # a remembered wrong key is as wrong as a derived one
    await login(database_url, user, password)
    assert len(derivations) == 2  # the right key and the wrong one, each derived once


async def test_a_password_set_again_has_a_new_salt_and_is_a_new_key(database_url, db, role, derivations):
    user, password = role
    await login(database_url, user, password)
    await db.execute(f"ALTER ROLE {user} PASSWORD '{password}'")  # the same password, a new random salt
    await login(database_url, user, password)
    assert len(derivations) == 2
    new_password = password + "-new"
    await db.execute(f"ALTER ROLE {user} PASSWORD '{new_password}'")
    with pytest.raises(asyncpg.InvalidPasswordError):
        await login(database_url, user, password)
    await login(database_url, user, new_password)


async def test_connections_outside_the_apps_connector_derive_as_asyncpg_does(database_url, role, derivations):
    user, password = role
    await login(database_url, user, password)
    url = make_url(database_url)
    for _ in range(2):
        connection = await asyncpg.connect(
            host=url.host, port=url.port, user=user, password=password, database=url.database
        )
        await connection.close()
    assert derivations == [4096] * 3


def test_the_cache_is_bounded(derivations):
    with app.db_driver.scram_keys_remembered():
        for number in range(10):
            scram_keys.pbkdf2_hmac("sha256", b"password", f"salt{number}".encode(), 2)
        assert len(scram_keys._salted_passwords) == app.db_driver._SCRAM_KEYS
        assert asyncpg.protocol.protocol.hashlib is scram_keys
        # The protocol module's other uses of hashlib (MD5 logins) and other PBKDF2 calls pass through.
        assert scram_keys.sha256 is hashlib.sha256 and scram_keys.md5 is hashlib.md5
        assert scram_keys.pbkdf2_hmac("sha256", b"p", b"s", 2) == hashlib.pbkdf2_hmac("sha256", b"p", b"s", 2)
