"""The README's commands work: each `sh` block marked `<!-- readme-test: run against make dev -->` runs in bash
against a real `make dev` (on a free port through DEV_PORT, on a database of its own), and every `curl` in it
answers the status its comment documents (`# 200 ...`). Every `sh` block in the README is marked either that way
or `<!-- readme-test: skip, <reason> -->`, and a `curl` against 127.0.0.1 anywhere in the docs must be run.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.conftest import drop_database
from tests.support.markdown import Block, fenced_blocks

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RUN = "run against make dev"
SHELLS = {"sh", "bash", "shell", "console"}
# One worker runs the module, so `make dev` starts once; the database is named per worker all the same, so that
# no other run of this module on the same server can drop or migrate it under this one.
pytestmark = pytest.mark.xdist_group("readme_commands")
DEV_DATABASE = f"task_api_readme_dev_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
# The server the README is written against; the test's own server listens elsewhere.
README_ORIGIN = "127.0.0.1:8000"
# A status the curl wrapper prints on stderr (curl's --write-out, %{stderr} since curl 7.63).
STATUS_LINE = re.compile(r"^@readme-status (\d{3})$", re.MULTILINE)
DOCUMENTED_STATUS = re.compile(r"(?:^|\s)#\s+(\d{3})\b")
# The test process's settings for the suite itself; `make dev` must start from a developer's defaults.
SUITE_ONLY = ("ENVIRONMENT", "SECRET_KEY", "DB_CONNECT_TIMEOUT", "AUTH_RATE_LIMIT_ATTEMPTS", "FAST_PASSWORD_HASHING")


def shell_blocks(path: Path) -> list[Block]:
    return [block for block in fenced_blocks(path.read_text()) if block.language in SHELLS]


def run_blocks() -> list[Block]:
    return [block for block in shell_blocks(README) if block.mark == RUN]


@dataclass(frozen=True)
class Command:
    line: int
    text: str
    status: int | None  # the documented HTTP status of a curl command; None for any other command


def commands(block: Block) -> list[Command]:
    """The block's commands, backslash-continued lines joined, each curl with the status its comment gives."""
    found: list[Command] = []
    pending: list[str] = []
    start = 0
    for offset, line in enumerate(block.text.splitlines(), start=1):
        if not pending:
            start = block.line + offset
            if not line.strip() or line.lstrip().startswith("#"):
                continue
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        text = " ".join([*pending, line])
        pending = []
        documented = DOCUMENTED_STATUS.findall(text)
        is_curl = re.search(r"\bcurl\b", text) is not None
        found.append(Command(start, text, int(documented[-1]) if is_curl and documented else None))
    return found


def test_every_sh_block_of_the_readme_says_whether_it_runs() -> None:
    blocks = shell_blocks(README)
    assert blocks, "the README has no sh block"
    for block in blocks:
        where = f"README.md:{block.line}"
        assert block.mark == RUN or re.fullmatch(r"skip, \S.*", block.mark), (
            f"{where}: mark the block <!-- readme-test: {RUN} --> or <!-- readme-test: skip, <reason> -->"
        )
        if "curl" in block.text:
            assert block.mark == RUN, f"{where}: a block with curl must run against make dev"
    assert any("curl" in block.text for block in run_blocks())


def test_every_curl_to_the_local_server_in_the_docs_runs() -> None:
    for path in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        for block in shell_blocks(path):
            if "curl" in block.text and "127.0.0.1" in block.text:
                assert block.mark == RUN, f"{path.relative_to(ROOT)}:{block.line}: a local curl block that is not run"


def test_every_curl_documents_its_status() -> None:
    for block in run_blocks():
        for command in commands(block):
            if "curl" in command.text:
                assert command.status is not None, f"README.md:{command.line}: end it with '# <status> ...'"


@pytest.fixture(scope="module")
def dev_server(database_url: str, tmp_path_factory) -> Iterator[tuple[str, dict[str, str]]]:
    """`make dev` as a developer runs it, on a free port and a database of its own on the test server."""
    from app.dev.embedded import free_port

    url = make_url(database_url).set(database=DEV_DATABASE)
    maintenance = make_url(database_url).set(database="postgres").render_as_string(hide_password=False)

    drop_database(maintenance, DEV_DATABASE)  # make dev (scripts/init_db.py) creates it
    port = str(free_port())
    env = {key: value for key, value in os.environ.items() if key not in SUITE_ONLY and not key.startswith("PYTEST")}
    env.update(
        DATABASE_URL=url.render_as_string(hide_password=False),
        DATABASE_URL_DIRECT=url.render_as_string(hide_password=False),
        DEV_PORT=port,
        DB_APPLICATION_NAME="task-api-readme",
    )
    log = tmp_path_factory.mktemp("make-dev") / "make-dev.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            ["make", "--no-print-directory", "dev"],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: uvicorn's reloader and worker stop with it
        )
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, f"make dev exited with {server.returncode}:\n{log.read_text()[-4000:]}"
            assert time.monotonic() < deadline, f"make dev never answered:\n{log.read_text()[-4000:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        yield port, env
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=10)
        drop_database(maintenance, DEV_DATABASE)


# A curl that also reports the status it got on stderr, in order, whatever its stdout goes to.
CURL_WRAPPER = "curl() { command curl --write-out '%{stderr}@readme-status %{http_code}\\n' \"$@\"; }\n"


@pytest.mark.parametrize("block", run_blocks(), ids=lambda block: f"README.md:{block.line}")
def test_the_readme_block_runs_against_make_dev(block: Block, dev_server: tuple[str, dict[str, str]]) -> None:
    port, env = dev_server
    script = "set -euo pipefail\n" + CURL_WRAPPER + block.text.replace(README_ORIGIN, f"127.0.0.1:{port}")
    result = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    report = f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    assert result.returncode == 0, f"README.md:{block.line}: the block failed ({result.returncode})\n{report}"

    curls = [command for command in commands(block) if command.status is not None]
    got = [int(status) for status in STATUS_LINE.findall(result.stderr)]
    expected = [command.status for command in curls]
    padded = [*got, *[None] * (len(curls) - len(got))][: len(curls)]
    lines = [f"  line {c.line}: documented {c.status}, got {g}" for c, g in zip(curls, padded, strict=True)]
    assert got == expected, "\n".join([f"README.md:{block.line}: statuses differ", *lines, report])


def test_commands_join_continued_lines_and_read_documented_statuses() -> None:
    text = "A=1\n\n# a comment\nX=$(curl -s $A \\\n  -d 'a#b')   # 201\nmake help   # 3 targets\ncurl -s $A\n"
    block = Block("sh", 10, text)
    assert commands(block) == [
        Command(11, "A=1", None),
        Command(14, "X=$(curl -s $A    -d 'a#b')   # 201", 201),
        Command(16, "make help   # 3 targets", None),
        Command(17, "curl -s $A", None),  # test_every_curl_documents_its_status refuses it
    ]
