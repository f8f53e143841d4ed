"""Without pgbouncer the pooler tests skip on a developer's machine, and fail in CI."""

import pytest

from tests.pooler import conftest, pgbouncer

# (the finder to break, what the test then requires, what the skip tells a developer to run)
BINARIES = {
    "1.18": ("find_binary", conftest.require_binary, "apt-get install pgbouncer"),
    "1.24": ("find_current_binary", conftest.require_current_binary, "scripts/build_pgbouncer.sh"),
}


@pytest.mark.parametrize("version", BINARIES)
def test_a_missing_pgbouncer_skips_with_the_reason_outside_ci(monkeypatch, version):
    finder, require, advice = BINARIES[version]
    monkeypatch.setattr(pgbouncer, finder, lambda: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=advice):
        require()


@pytest.mark.parametrize("version", BINARIES)
def test_a_missing_pgbouncer_fails_in_ci(monkeypatch, version):
    finder, require, _ = BINARIES[version]
    monkeypatch.setattr(pgbouncer, finder, lambda: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run the pooler tests"):
        require()


def test_the_built_pgbouncer_is_found_in_the_cache_folder(monkeypatch, tmp_path):
    binary = tmp_path / "pgbouncer-1.24" / "bin" / "pgbouncer"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\necho 'PgBouncer 1.24.1'\n")
    binary.chmod(0o755)
    monkeypatch.setenv("TASK_API_CACHE", str(tmp_path))
    assert pgbouncer.find_current_binary() == str(binary)
    assert pgbouncer.tracks_prepared_statements(str(binary))
