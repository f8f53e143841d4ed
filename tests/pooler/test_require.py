"""Without pgbouncer the pooler tests skip on a developer's machine, and fail in CI."""

import pytest

from tests.pooler import conftest, pgbouncer


def test_skips_with_the_reason_outside_ci(monkeypatch):
    monkeypatch.setattr(pgbouncer, "find_binary", lambda: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install pgbouncer"):
        conftest.require_binary()


def test_fails_in_ci(monkeypatch):
    monkeypatch.setattr(pgbouncer, "find_binary", lambda: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run the pooler tests"):
        conftest.require_binary()
