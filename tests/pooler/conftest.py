"""A pgbouncer in transaction mode in front of the session's test database, once per test session.

Without pgbouncer these tests skip with the reason (a developer's machine), except in CI (`CI` set), where a
missing pgbouncer is a failure: .ci/run installs it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.pooler import pgbouncer as pgb
from tests.support import requirements


def _require(binary: str | None, missing: str) -> str:
    """The binary; without it a skip that says how to get it, or, in CI, a failure (CI must run these tests)."""
    if binary is None:
        requirements.missing(missing, ci="CI must run the pooler tests")
    return binary


def require_binary() -> str:
    return _require(pgb.find_binary(), pgb.MISSING)


@pytest.fixture(scope="session")
def pgbouncer_binary() -> str:
    return require_binary()


# Clients log in to the test pgbouncer with md5: asyncpg's SCRAM costs ~20 ms of CPU per connection, and
# the proofs open a connection per request (as Lambda does). pgbouncer itself logs in to PostgreSQL with
# SCRAM, and tests/pooler/test_pgbouncer.py shows SCRAM client logins work too.
CLIENT_AUTH = "md5"


def running_pgbouncer(binary: str, database_url: str) -> Iterator[pgb.PgBouncer]:
    bouncer = pgb.start(database_url, binary=binary, auth_type=CLIENT_AUTH)
    try:
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture(scope="module")
def pgbouncer(pgbouncer_binary: str, database_url: str) -> Iterator[pgb.PgBouncer]:
    """A pgbouncer for the module. Stopping it closes its server connections: kept in a pooler that outlived the
    module, they would stay in pg_stat_activity under the app's application_name, where later tests on the same
    worker count the app's open connections."""
    yield from running_pgbouncer(pgbouncer_binary, database_url)


@pytest.fixture
def fresh_pgbouncer(pgbouncer_binary: str, database_url: str) -> Iterator[pgb.PgBouncer]:
    """A pgbouncer of the test's own, for tests that leave prepared statements on its server connections."""
    yield from running_pgbouncer(pgbouncer_binary, database_url)


def require_current_binary() -> str:
    return _require(pgb.find_current_binary(), pgb.CURRENT_MISSING)


# Both poolers, for the tests where they differ: Debian bookworm's 1.18 ("old": no prepared-statement tracking)
# and 1.24 built from trixie's source ("current": keeps them, like Neon's).
POOLERS = ["pgbouncer-1.18", "pgbouncer-1.24"]


@pytest.fixture(params=POOLERS)
def any_pgbouncer_binary(request: pytest.FixtureRequest) -> str:
    return require_binary() if request.param == "pgbouncer-1.18" else require_current_binary()
