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


def test_a_missing_pgbouncer_1_24_skips_with_the_reason_outside_ci(monkeypatch):
    monkeypatch.setattr(pgbouncer, "find_current_binary", lambda: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="scripts/build_pgbouncer.sh"):
        conftest.require_current_binary()


def test_a_missing_pgbouncer_1_24_fails_in_ci(monkeypatch):
    monkeypatch.setattr(pgbouncer, "find_current_binary", lambda: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run the pooler tests"):
        conftest.require_current_binary()


def test_the_built_pgbouncer_is_found_in_the_cache_folder(monkeypatch, tmp_path):
    binary = tmp_path / "pgbouncer-1.24" / "bin" / "pgbouncer"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\necho 'PgBouncer 1.24.1'\n")
    binary.chmod(0o755)
    monkeypatch.setenv("TASK_API_CACHE", str(tmp_path))
    assert pgbouncer.find_current_binary() == str(binary)
    assert pgbouncer.tracks_prepared_statements(str(binary))
