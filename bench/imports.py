"""Cold-start import cost: `import app.handler` against the bare library floor, and from the Lambda zip.

    .venv/bin/python bench/imports.py [--repeat 9] [--zip .serverless/task-api.zip]

Every measurement is a fresh interpreter (a cold start imports everything once), timed inside the process, so
interpreter start-up is left out: the process's CPU time (steadier on a busy machine; with files cached,
imports are CPU work) and wall time. Runs alternate between the variants, so machine load hits them alike;
medians are reported. The target (app.handler <= 1.2 x the floor, issue 23) is judged on instructions, below.

The zip part unpacks the artifact `make package` built and imports app.handler from it with `-I -S -B` (only
the zip's packages, nothing written, as on Lambda's read-only filesystem): once with the shipped bytecode and
once with it removed. The zip's compiled extensions are for arm64; on another machine they are swapped for
the same versions' native builds from .venv (pinned alike by constraints.txt), which leaves the Python side,
the part bytecode changes, as shipped.

Instructions (the figure the target is judged on): `valgrind --tool=callgrind` counts the instructions of
`import app.handler`, of the floor and of an empty program (the interpreter's own start-up, subtracted from
both). A count does not move with the machine's load, unlike CPU time, whose ratio moved between 1.04 and 1.22
for the same code. `--no-callgrind` skips it (each count takes a minute or so). Counted in two environments,
floor and app alike in each:

- runtime (the target's figure): `python -I -S` with only the Lambda zip's runtime distributions on the path
  (scripts/lambda_artifact.py's list, the versions constraints.txt pins), copied from .venv into a cache
  folder, plus the source tree. This is what a Lambda user imports.
- .venv: the development environment, dev-only packages included. They change what libraries import: PyJWT
  loads `cryptography` when it is installed, which the artifact never ships.

Each environment also counts `import app.handler` followed by the first requests that need no database (the
SnapStart warm-up's list: health, 401s, a 422, a 404), because work moved out of the import is paid there by
a cold start without SnapStart.
`--powertools DIR` (issue 26's choice of library) compares, in fresh interpreters, what AWS Lambda Powertools'
Logger and Metrics add to `import app.handler` (imported and constructed as a Powertools user does at module
level; DIR holds the package, e.g. `pip install --target DIR aws-lambda-powertools`, kept out of .venv) with
what the app's own stdlib piece (app/invocation.py, app/metrics.py) costs on top of the modules it needs:
CPU time medians, and callgrind instructions in the runtime environment.
Prints a table; exits non-zero only if it cannot run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLOOR = "fastapi, sqlmodel, sqlalchemy.ext.asyncio, asyncpg, mangum, pydantic_settings"
# Production-shaped settings: a Neon pooled URL exactly as Neon's console gives it (channel_binding included:
# the settings' TLS handling reads it at import); nothing connects at import.
ENV = {
    "ENVIRONMENT": "production",
    "DATABASE_URL": "postgresql://bench:bench@ep-bench-123456-pooler.us-east-2.aws.neon.tech/neondb?sslmode=require&channel_binding=require",
    "SECRET_KEY": "bench-only-0123456789abcdef0123456789abcdef",
}
TIMED = (
    "import sys, time; {path}c, w = time.process_time(), time.perf_counter(); import {modules}; "
    "print(time.process_time() - c, time.perf_counter() - w)"
)
Sample = tuple[float, float]  # (CPU seconds, wall seconds)


def timed_import(modules: str, *, flags: tuple[str, ...] = (), path: str | None = None, cwd: Path = ROOT) -> Sample:
    prefix = f"sys.path.insert(0, {path!r}); " if path else ""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "DATABASE_", "DB_"))} | ENV
    result = subprocess.run(
        [sys.executable, *flags, "-c", TIMED.format(path=prefix, modules=modules)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"import of {modules} failed:\n{result.stderr[-3000:]}")
    cpu_s, wall_s = result.stdout.strip().splitlines()[-1].split()
    return float(cpu_s), float(wall_s)


RUNTIME_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "task-api" / "bench-runtime"
FIRST_REQUESTS = "import app.handler; from app.snapstart import warm_request_path; warm_request_path()"


def runtime_site() -> Path:
    """A folder holding only the Lambda artifact's runtime distributions, copied file by file from the installed
    ones (their RECORD), so a production-shaped interpreter sees neither the dev extras nor anything else.
    Built once per requirement list and Python version, then reused."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from lambda_artifact import runtime_requirements
    finally:
        sys.path.pop(0)
    from importlib import metadata

    pins = runtime_requirements(ROOT / "pyproject.toml", ROOT / "constraints.txt")
    tag = f"cpython-{sys.version_info[0]}{sys.version_info[1]}"
    digest = hashlib.sha256("\n".join(pins).encode()).hexdigest()[:12]
    site = RUNTIME_CACHE / f"{tag}-{digest}"
    if (site / ".complete").exists():
        return site
    building = site.with_name(site.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    for pin in pins:
        dist = metadata.distribution(pin.split("==")[0])
        base = Path(str(dist.locate_file("")))
        for file in dist.files or []:
            if file.parts[0] == ".." or "__pycache__" in file.parts:  # scripts in bin/; bytecode is made below
                continue
            source = base / file
            if source.is_file():
                (building / file).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, building / file)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(building)], check=True)
    (building / ".complete").write_text("\n".join(pins) + "\n")
    shutil.rmtree(site, ignore_errors=True)
    building.rename(site)
    return site


def interpreter(code: str, site: Path | None) -> list[str]:
    """`python -c code`; with `site`, isolated and without the site module (`-I -S`), with only `site` and the
    source tree on its path, as on Lambda."""
    if site is None:
        return [sys.executable, "-c", code]
    return [sys.executable, "-I", "-S", "-c", f"import sys; sys.path[:0] = [{str(site)!r}, {str(ROOT)!r}]; {code}"]


def counting_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "DATABASE_", "DB_"))} | ENV
    env["PYTHONHASHSEED"] = "0"  # same dict layouts every run: the count repeats to a few parts per million
    return env


def warm_up(code: str, site: Path | None = None) -> None:
    subprocess.run(interpreter(code, site), cwd=ROOT, env=counting_env(), capture_output=True, check=False)


def instructions(code: str, site: Path | None = None) -> int:
    """Instructions executed by a fresh `python -c code` (see `interpreter`), start-up and exit included."""
    result = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *interpreter(code, site)],
        cwd=ROOT,
        env=counting_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"Collected : (\d+)", result.stderr)
    if result.returncode != 0 or not found:
        raise SystemExit(f"callgrind of {code!r} failed:\n{result.stderr[-3000:]}")
    return int(found.group(1))


def callgrind_ratio() -> None:
    site = runtime_site()
    environments = {"runtime": site, ".venv": None}
    programs = {
        "start-up": "pass",
        "floor": f"import {FLOOR}",
        "handler": "import app.handler",
        "first": FIRST_REQUESTS,
    }
    jobs = [(env, name) for env in environments for name in programs]
    # One uncounted run first, so that no count includes compiling a source file changed since its bytecode.
    for job in jobs:
        warm_up(programs[job[1]], environments[job[0]])
    # Counts do not depend on load, so two run at once.
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        counts = dict(
            zip(jobs, pool.map(lambda job: instructions(programs[job[1]], environments[job[0]]), jobs), strict=True)
        )
    print(f"\nruntime environment: `python -I -S`, path = {site} (the zip's runtime distributions) + source tree")
    print("\n| instructions (callgrind, start-up subtracted), millions | runtime (target) | .venv (dev extras) |")
    print("|---------------------------------------------------------|------------------|--------------------|")

    def net(env: str, name: str) -> int:
        return counts[(env, name)] - counts[(env, "start-up")]

    rows = [
        ("interpreter start-up (`-c pass`, not subtracted)", lambda env: counts[(env, "start-up")]),
        ("library floor", lambda env: net(env, "floor")),
        ("import app.handler", lambda env: net(env, "handler")),
        ("import app.handler + first requests without DB", lambda env: net(env, "first")),
    ]
    for label, value in rows:
        print(f"| {label:<55} | {value('runtime') / 1e6:16,.0f} | {value('.venv') / 1e6:18,.0f} |")
    for env in environments:
        ratio = net(env, "handler") / net(env, "floor")
        first = net(env, "first") / net(env, "floor")
        judged = " (the target's figure: <= 1.2)" if env == "runtime" else " (dev-only packages included)"
        print(f"{env}: app.handler / floor = {ratio:.3f}{judged}; with the first requests {first:.3f}")


# What a Powertools user writes at module level; and the app's own piece on top of the modules it imports anyway.
POWERTOOLS = (
    "from aws_lambda_powertools import Logger, Metrics; "
    "Logger(service='task-api'); Metrics(namespace='TaskAPI', service='task-api')"
)
OWN_PIECE_DEPENDENCIES = "json, re, contextvars, sqlalchemy, sqlalchemy.engine, sqlalchemy.event, app.snapstart"
OWN_PIECE = "app.invocation, app.metrics"


def powertools_comparison(site_dir: Path, repeat: int, counts: bool) -> None:
    """What Powertools' Logger + Metrics add to `import app.handler`, beside what the stdlib piece costs."""
    if not (site_dir / "aws_lambda_powertools").is_dir():
        raise SystemExit(
            f"no aws_lambda_powertools in {site_dir}: pip install --target {site_dir} aws-lambda-powertools"
        )
    from importlib import metadata

    version = next(metadata.distributions(path=[str(site_dir)], name="aws-lambda-powertools")).version
    with_site = f"sys.path.append({str(site_dir)!r}); "
    programs = {
        "handler": "import app.handler",
        "handler + Powertools": f"import sys; {with_site}import app.handler; {POWERTOOLS}",
        "own piece's dependencies": f"import {OWN_PIECE_DEPENDENCIES}",
        "own piece": f"import {OWN_PIECE_DEPENDENCIES}; import {OWN_PIECE}",
    }
    print(f"\naws-lambda-powertools {version} (Logger + Metrics) against the stdlib piece, n={repeat}")
    samples: dict[str, list[Sample]] = {name: [] for name in programs}
    for code in programs.values():  # page cache and bytecode; not counted
        warm_up(code)
    for _ in range(repeat):
        for name, code in programs.items():
            samples[name].append(_timed_program(code))
    handler = cpu(samples["handler"])
    added = cpu(samples["handler + Powertools"]) - handler
    own = cpu(samples["own piece"]) - cpu(samples["own piece's dependencies"])
    rows = [
        ("import app.handler (ms CPU)", handler * 1000, "-"),
        ("Powertools Logger + Metrics added (ms CPU)", added * 1000, f"{100 * added / handler:.1f}%"),
        ("stdlib piece (app.invocation + app.metrics) (ms CPU)", own * 1000, f"{100 * own / handler:.1f}%"),
    ]
    if counts:
        site = runtime_site()
        instr = {name: instructions(code, site) for name, code in programs.items()}
        start = instructions("pass", site)
        net_handler = instr["handler"] - start
        pt = instr["handler + Powertools"] - instr["handler"]
        piece = instr["own piece"] - instr["own piece's dependencies"]
        rows += [
            ("import app.handler (M instructions, runtime env)", net_handler / 1e6, "-"),
            ("Powertools Logger + Metrics added (M instructions)", pt / 1e6, f"{100 * pt / net_handler:.1f}%"),
            ("stdlib piece (M instructions)", piece / 1e6, f"{100 * piece / net_handler:.1f}%"),
        ]
    width = max(len(r[0]) for r in rows)
    print(f"| {'what':<{width}} | {'value':>8} | of import app.handler |")
    print(f"|{'-' * (width + 2)}|{'-' * 10}|{'-' * 23}|")
    for label, value, share in rows:
        print(f"| {label:<{width}} | {value:8.2f} | {share:>21} |")
    print("judged: Powertools is adopted if it adds <= 3% to import app.handler")


def _timed_program(code: str) -> Sample:
    """CPU and wall seconds of `code` in a fresh interpreter (start-up excluded)."""
    program = f"import time; c, w = time.process_time(), time.perf_counter(); {code}; import sys; "
    program += "print(time.process_time() - c, time.perf_counter() - w)"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "DATABASE_", "DB_"))} | ENV
    result = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"{code!r} failed:\n{result.stderr[-3000:]}")
    cpu_s, wall_s = result.stdout.strip().splitlines()[-1].split()
    return float(cpu_s), float(wall_s)


def measure(variants: dict[str, dict], repeat: int) -> dict[str, list[Sample]]:
    samples: dict[str, list[Sample]] = {name: [] for name in variants}
    for kwargs in variants.values():  # warm the OS page cache; not counted
        timed_import(**kwargs)
    for _ in range(repeat):
        for name, kwargs in variants.items():
            samples[name].append(timed_import(**kwargs))
    return samples


def cpu(samples: list[Sample]) -> float:
    return statistics.median(s[0] for s in samples)


def wall(samples: list[Sample]) -> float:
    return statistics.median(s[1] for s in samples)


def row(label: str, samples: list[Sample]) -> str:
    cpu_ms = [s[0] * 1000 for s in samples]
    return (
        f"| {label:<44} | {cpu(samples) * 1000:7.0f} | {min(cpu_ms):7.0f} | {max(cpu_ms):7.0f} "
        f"| {wall(samples) * 1000:8.0f} |"
    )


def host_native_artifact(zip_path: Path, into: Path) -> tuple[int, list[str]]:
    """Unpack the zip; swap its arm64 extension modules for this machine's builds from .venv."""
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(into)
    site = Path(sysconfig.get_paths()["platlib"])
    host_suffix = sysconfig.get_config_var("EXT_SUFFIX")  # e.g. .cpython-311-x86_64-linux-gnu.so
    swapped, missing = 0, []
    for so in into.rglob("*.so"):
        relative = so.relative_to(into)
        name = relative.name
        if "-aarch64-linux-gnu.so" in name and platform.machine() != "aarch64":
            name = name.split(".cpython-")[0] + host_suffix
        native = site / relative.parent / name
        if not native.exists():
            missing.append(str(relative))
            continue
        so.unlink()
        shutil.copy2(native, into / relative.parent / name)
        swapped += 1
    return swapped, missing


def strip_bytecode(tree: Path) -> int:
    caches = list(tree.rglob("__pycache__"))
    for cache in caches:
        shutil.rmtree(cache)
    return len(caches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--zip", type=Path, default=ROOT / ".serverless" / "task-api.zip")
    parser.add_argument("--no-callgrind", action="store_true", help="skip the instruction counts")
    parser.add_argument("--only-callgrind", action="store_true", help="only the instruction counts")
    parser.add_argument(
        "--powertools", type=Path, metavar="DIR", help="only the Powertools comparison, with the package from DIR"
    )
    args = parser.parse_args()
    if args.powertools:
        print(f"Python {platform.python_version()} on {platform.machine()}")
        powertools_comparison(args.powertools.resolve(), args.repeat, counts=not args.no_callgrind)
        return
    if args.only_callgrind:
        print(f"Python {platform.python_version()} on {platform.machine()}")
        callgrind_ratio()
        return

    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, n={args.repeat}\n")
    header = (
        f"| {'import (fresh interpreter, in-process, ms)':<44} | {'CPU med':>7} | {'CPU min':>7} "
        f"| {'CPU max':>7} | {'wall med':>8} |"
    )
    rule = f"|{'-' * 46}|{'-' * 9}|{'-' * 9}|{'-' * 9}|{'-' * 10}|"
    print(header, rule, sep="\n")

    source = measure(
        {"floor": {"modules": FLOOR}, "handler": {"modules": "app.handler"}},
        args.repeat,
    )
    print(row("library floor", source["floor"]))
    print(row("app.handler (source tree, .venv)", source["handler"]))
    ratio = cpu(source["handler"]) / cpu(source["floor"])
    wall_ratio = wall(source["handler"]) / wall(source["floor"])

    notes = []
    if args.zip.exists() and f"cpython-{sys.version_info[0]}{sys.version_info[1]}" in _zip_cache_tags(args.zip):
        with tempfile.TemporaryDirectory(prefix="task-api-artifact-") as tmp:
            with_pyc, without_pyc = Path(tmp) / "with", Path(tmp) / "without"
            swapped, missing = host_native_artifact(args.zip, with_pyc)
            shutil.copytree(with_pyc, without_pyc, symlinks=True)
            removed = strip_bytecode(without_pyc)
            common = {"modules": "app.handler", "flags": ("-I", "-S", "-B")}
            artifact = measure(
                {
                    "with": {**common, "path": str(with_pyc), "cwd": with_pyc},
                    "without": {**common, "path": str(without_pyc), "cwd": without_pyc},
                },
                args.repeat,
            )
            print(row("app.handler from the zip, with its bytecode", artifact["with"]))
            print(row("app.handler from the zip, bytecode removed", artifact["without"]))
            speedup = cpu(artifact["without"]) / cpu(artifact["with"])
            notes.append(f"bytecode: {speedup:.2f}x faster import from the zip ({removed} __pycache__ dirs removed)")
            notes.append(f"{swapped} arm64 extension modules swapped for native builds; missing: {missing or 'none'}")
            size = sum(i.file_size for i in zipfile.ZipFile(args.zip).infolist())
            notes.append(f"zip: {args.zip.stat().st_size / 1e6:.1f} MB, unzipped {size / 1e6:.1f} MB (limit 262 MB)")
    elif not args.zip.exists():
        notes.append(f"no artifact at {args.zip}: run `make package` to add the zip rows")
    else:
        tags = _zip_cache_tags(args.zip)
        notes.append(f"the zip's bytecode is for {tags}: run this with that Python for the zip rows")

    print(f"\napp.handler / floor = {ratio:.2f} on CPU time, {wall_ratio:.2f} on wall time")
    for note in notes:
        print(note)
    if not args.no_callgrind:
        callgrind_ratio()


def _zip_cache_tags(zip_path: Path) -> set[str]:
    with zipfile.ZipFile(zip_path) as archive:
        return {m.group(0) for name in archive.namelist()[:2000] if (m := re.search(r"cpython-\d+", name))}


if __name__ == "__main__":
    main()
