"""The test suite's wall time against the suite as it was before it ran in parallel (commit 94d96b3, serial).

    .venv/bin/python bench/suite_time.py [--rounds 1] [--paths tests/test_health.py ...] [--commit 94d96b3]

The old suite is the old commit's own tree, exported with `git archive` into a cache folder
(${TASK_API_CACHE:-~/.cache/task-api}/suite-<commit>, kept for the next run), with its own .venv installed by its
own `make install` from its own pyproject.toml and constraints.txt (its pytest pin among them), and its own
node_modules when this tree has them, so that its packaging tests run instead of skipping. Each tree runs its
own `make test`: the old one serially, this one on pytest-xdist workers. Both start their own embedded
PostgreSQL in a fresh temporary folder on a free port (tests/conftest.py), so neither touches the other's server
or either tree's .data/.

Runs go back to back; with --rounds > 1 they alternate which goes first, so that a change in the machine's load
hits both alike, and the medians are compared. Wall clock, because the target is how long a developer waits; the
load average before each run is printed with it, because other work on the machine moves the figures.
`--paths` restricts both runs to some test files (bench-smoke uses tests/test_health.py).

Target: this tree's `make test` runs at least as many tests in <= 0.6 x the old suite's time. Prints a table;
exits non-zero only if a suite could not run (no pytest summary), not because a test failed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OLD_COMMIT = "94d96b3"
TARGET_RATIO = 0.6
# Outcomes in pytest's last line; "tests" counts every one that ran or was skipped (not deselected ones).
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
SUMMARY = re.compile(r"^=+ (?P<body>.*\d+ (?:passed|failed|errors?|skipped).*) in [\d.]+s(?: \([^)]*\))? =+$")


@dataclass
class Run:
    suite: str
    seconds: float
    load_before: float
    counts: dict[str, int]
    exit_code: int
    log: Path

    @property
    def tests(self) -> int:
        return sum(self.counts.values())


def cache_dir(commit: str) -> Path:
    return Path(os.environ.get("TASK_API_CACHE", Path.home() / ".cache" / "task-api")) / f"suite-{commit}"


def prepare_old_tree(commit: str, with_node: bool) -> Path:
    """The old commit's tree with its own .venv (and node_modules), made once and reused."""
    tree = cache_dir(commit) / "tree"
    if not (tree / ".exported").exists():
        shutil.rmtree(tree, ignore_errors=True)
        tree.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
        (tree / ".exported").touch()
    # Its own Makefile's install: a no-op when its .venv is up to date.
    done = subprocess.run(["make", "-s", "install"], cwd=tree, env=clean_environment(), capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"`make install` of {commit} in {tree} failed:\n{done.stdout}{done.stderr}")
    if with_node and not (tree / "node_modules" / ".package-lock.json").exists():
        done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=tree, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"`npm ci` in {tree} failed:\n{done.stdout}{done.stderr}")
    return tree


def clean_environment() -> dict[str, str]:
    """This process's environment without what would point a suite at another tree's venv or database."""
    drop = {"VIRTUAL_ENV", "DATABASE_URL", "DATABASE_URL_DIRECT", "PYTHONPATH", "MAKEFLAGS"}
    # TASK_API_TEST_*: the secrets tests/conftest.py shares with its xdist workers, made afresh by each suite.
    return {
        name: value
        for name, value in os.environ.items()
        if name not in drop and not name.startswith(("TASK_API_TEST_", "PYTEST_"))
    }


def run_suite(suite: str, tree: Path, paths: list[str], log: Path) -> Run:
    command = ["make", "-s", "test"]
    if paths:
        command.append(f"PYTEST_ARGS={' '.join(paths)}")
    load_before = os.getloadavg()[0]
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"  {suite}: make test{' ' + ' '.join(paths) if paths else ''} (load {load_before:.2f}) ...", flush=True)
    started = time.monotonic()
    with log.open("w") as out:
        done = subprocess.run(command, cwd=tree, env=clean_environment(), stdout=out, stderr=subprocess.STDOUT)
    seconds = time.monotonic() - started
    counts = parse_counts(log.read_text(errors="replace"))
    run = Run(suite, seconds, load_before, counts, done.returncode, log)
    summary = ", ".join(f"{n} {name}" for name, n in counts.items() if n) or "no pytest summary"
    print(f"  {suite}: {seconds:.1f} s, {summary} (exit {done.returncode}; log {log})", flush=True)
    return run


def parse_counts(output: str) -> dict[str, int]:
    counts = dict.fromkeys(OUTCOMES, 0)
    for line in reversed(output.splitlines()):
        match = SUMMARY.match(line.strip())
        if match:
            for number, name in re.findall(r"(\d+) (\w+)", match.group("body")):
                name = "error" if name == "errors" else name
                if name in counts:
                    counts[name] = int(number)
            return counts
    return {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commit", default=OLD_COMMIT, help="the old suite's commit (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each suite, alternating which goes first")
    parser.add_argument("--paths", nargs="+", default=[], help="test files to run in both trees (default: all)")
    args = parser.parse_args()

    print(f"old suite: {args.commit}; this tree: {ROOT} ({git_head()}); cores: {os.cpu_count()}", flush=True)
    whole = not args.paths
    with_node = whole and (ROOT / "node_modules" / ".package-lock.json").exists()
    if whole and not with_node:
        print("  note: no node_modules here (`npm ci`): both suites' packaging tests will skip", flush=True)
    old_tree = prepare_old_tree(args.commit, with_node)
    logs = cache_dir(args.commit) / "logs"
    stamp = time.strftime("%Y%m%dT%H%M%S")

    runs: list[Run] = []
    for round_number in range(args.rounds):
        order = [("old", old_tree), ("current", ROOT)]
        if round_number % 2:
            order.reverse()
        for suite, tree in order:
            runs.append(run_suite(suite, tree, args.paths, logs / f"{stamp}-{suite}-{round_number + 1}.log"))
    load_after = os.getloadavg()[0]

    print(
        f"\n{'round':>5} {'suite':<8} {'tests':>6} {'passed':>7} {'failed':>7} {'errors':>7} {'skipped':>8}"
        f" {'seconds':>8} {'load before':>12}"
    )
    for index, run in enumerate(runs):
        print(
            f"{index // 2 + 1:>5} {run.suite:<8} {run.tests:>6} {run.counts.get('passed', 0):>7}"
            f" {run.counts.get('failed', 0):>7} {run.counts.get('error', 0):>7} {run.counts.get('skipped', 0):>8}"
            f" {run.seconds:>8.1f} {run.load_before:>12.2f}"
        )
    print(f"load average after: {load_after:.2f}")
    old = statistics.median(run.seconds for run in runs if run.suite == "old")
    current = statistics.median(run.seconds for run in runs if run.suite == "current")
    old_tests = max(run.tests for run in runs if run.suite == "old")
    current_tests = min(run.tests for run in runs if run.suite == "current")
    ratio = current / old if old else float("nan")
    print(f"median wall time: old {old:.1f} s, current {current:.1f} s; ratio {ratio:.2f} (target <= {TARGET_RATIO})")
    print(f"tests: old {old_tests}, current {current_tests} (target: at least as many)")
    broken = [run for run in runs if not run.counts or run.exit_code not in (0, 1)]
    for run in broken:
        print(f"{run.suite} did not complete (exit {run.exit_code}): see {run.log}", file=sys.stderr)
    return 1 if broken else 0


def git_head() -> str:
    done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


if __name__ == "__main__":
    sys.exit(main())
