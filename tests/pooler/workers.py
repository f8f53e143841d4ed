"""Start load processes (tests/pooler/load.py) together, and a real uvicorn, for the pooler proof."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from app.dev.embedded import free_port

ROOT = Path(__file__).resolve().parents[2]

START_TIMEOUT = 60  # seconds for every worker to import the app and set up
RUN_TIMEOUT = 240  # seconds for every worker to finish
READY_TIMEOUT = 60  # seconds for uvicorn to answer its readiness check


def app_environment(
    database_url: str, direct_url: str, *, pooler_guard: bool, pool: str = "null", fast_hashing: bool = True
) -> dict[str, str]:
    """The environment of a process running the app against `database_url`.

    The pgbouncer listens on 127.0.0.1 (no `-pooler` in the host), so DB_POOLER alone decides whether the
    pooler-safe settings are on: exactly the switch whose effect the proof shows. Password hashing is the
    suite's cheap argon2 (tests/conftest.py) unless `fast_hashing=False` (the benches' production cost).
    """
    return {
        **os.environ,
        "ENVIRONMENT": "test",
        "FAST_PASSWORD_HASHING": "true" if fast_hashing else "false",
        "DATABASE_URL": database_url,
        "DATABASE_URL_DIRECT": direct_url,
        "DB_POOLER": "true" if pooler_guard else "false",
        "DB_POOL": pool,
        "DB_CONNECT_TIMEOUT": "10",
        "PYTHONDONTWRITEBYTECODE": "1",
        # The app logs a line per request to stderr; the workers' stderr is a pipe read only once they exit,
        # and a full pipe (64 KB, a few hundred lines) would block them. Warnings and errors still show.
        "LOG_LEVEL": "WARNING",
        # Under Lambda (the `lambda` workers pass a context) the request line carries the EMF metrics and is
        # written whatever LOG_LEVEL says: off here, for the same reason.
        "EMF_METRICS": "off",
    }


def run_workers(mode: list[str], count: int, requests_each: int, env: dict[str, str], workdir: Path) -> list[dict]:
    """Run `count` load processes at once (released together once all are set up); return their reports."""
    workdir.mkdir(parents=True, exist_ok=True)
    go = workdir / "go"
    outputs = [workdir / f"worker-{index}.json" for index in range(count)]
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.pooler.load",
                *mode,
                "--worker",
                str(index),
                "--requests",
                str(requests_each),
                "--go",
                str(go),
                "--out",
                str(output),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index, output in enumerate(outputs)
    ]
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not all(Path(f"{output}.ready").exists() for output in outputs):
            crashed = [process for process in processes if process.poll() is not None]
            if crashed or time.monotonic() > deadline:
                raise AssertionError(f"a worker did not start: {_stderr(crashed or processes)}")
            time.sleep(0.02)
        go.touch()
        for process in processes:
            process.wait(timeout=RUN_TIMEOUT)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
    failed = [process for process in processes if process.returncode != 0]
    assert not failed, f"workers failed: {_stderr(failed)}"
    return [json.loads(output.read_text()) for output in outputs]


def _stderr(processes: list[subprocess.Popen[str]]) -> str:
    tails = []
    for process in processes:
        if process.poll() is None:
            process.kill()
        _, err = process.communicate(timeout=10)
        tails.append((err or "")[-1500:])
    return "\n---\n".join(tails)


def ran_concurrently(reports: list[dict]) -> bool:
    """Every process was running at one same moment (the last start precedes the first finish)."""
    return max(report["started"] for report in reports) < min(report["finished"] for report in reports)


@dataclass(frozen=True)
class Server:
    url: str
    pid: int  # with one worker, the process that serves the requests


@contextlib.contextmanager
def uvicorn_server(env: dict[str, str], log_path: Path, workers: int = 2) -> Iterator[Server]:
    """A real uvicorn (`workers` processes) serving app.main:app on 127.0.0.1, ready to serve."""
    port = free_port()
    log = open(log_path, "w+")  # noqa: SIM115 - closed in finally, read on failure
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "app.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--no-access-log",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if process.poll() is not None:
                raise AssertionError(f"uvicorn exited with code {process.returncode}: {_log_tail(log)}")
            try:
                if httpx.get(f"{base_url}/api/v1/health/db", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"uvicorn was not ready within {READY_TIMEOUT} s: {_log_tail(log)}")
            time.sleep(0.1)
        yield Server(base_url, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


def _log_tail(log) -> str:
    log.flush()
    log.seek(0)
    return log.read()[-2000:]
