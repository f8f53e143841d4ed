"""Does login timing reveal whether an email is registered? Measured through the Lambda handler and PostgreSQL.

    python bench/login_timing.py [--samples 150] [--warmup 10] [--no-control] [--seed 8]

Interleaves, in a shuffled order, failed logins (`POST /api/v1/auth/token`, HTTP API 2.0 events through
app.handler.handler, a real database) of two kinds:
- registered: an email that has an account, with a wrong password;
- unknown: an email with no account.
and reports the wall time of each invocation as the client sees it: median, p90, the ratio of medians, and a
two-sided Mann-Whitney U test (normal approximation with tie correction; no scipy) with the common-language
effect size P(registered > unknown) (0.5: indistinguishable) and the Hodges-Lehmann shift estimate.

The control arm (on by default) is the same unknown-email login with the dummy verify switched off in this
process, i.e. what a naive implementation would do: it shows the test does detect a real difference.
Both emails are fixed, so both arms update an existing rate-limit counter row (the limit is set far above the
number of attempts, so the counting statement stays in the path as in production).

Exits non-zero only when something fails to run, never because of a figure.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (  # noqa: E402
    LambdaContext,
    bench_database_url,
    http_api_event,
    migrate,
    run,
    table,
)

REGISTERED = "timing-user@example.com"
UNKNOWN = "nobody-registered-this@example.com"
LOGIN = "/api/v1/auth/token"


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties given their average rank."""
    order = sorted(range(len(values)), key=values.__getitem__)
    result = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            result[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return result


def mann_whitney_u(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """(U of `a`, two-sided p, P(a > b) + P(a = b) / 2), normal approximation with tie correction."""
    n1, n2 = len(a), len(b)
    combined = list(a) + list(b)
    r = ranks(combined)
    u1 = sum(r[:n1]) - n1 * (n1 + 1) / 2
    n = n1 + n2
    tie_sizes: dict[float, int] = {}
    for value in combined:
        tie_sizes[value] = tie_sizes.get(value, 0) + 1
    tie_term = sum(t**3 - t for t in tie_sizes.values()) / (n * (n - 1))
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - tie_term))
    mean = n1 * n2 / 2
    z = (abs(u1 - mean) - 0.5) / sigma if sigma else 0.0  # with continuity correction
    p = math.erfc(max(z, 0.0) / math.sqrt(2))
    return u1, p, u1 / (n1 * n2)


def hodges_lehmann(a: Sequence[float], b: Sequence[float]) -> float:
    """The median of all pairwise differences a_i - b_j: a robust estimate of the shift between the two."""
    return statistics.median(x - y for x in a for y in b)


def p90(samples: Sequence[float]) -> float:
    return statistics.quantiles(samples, n=10)[-1]


async def ensure_user(url: str) -> None:
    import asyncpg

    from app.security import hash_password

    connection = await asyncpg.connect(url)
    try:
        await connection.execute(
            "INSERT INTO users (email, hashed_password) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            REGISTERED,
            hash_password("the real password of the timing user"),
        )
        assert await connection.fetchval("SELECT count(*) FROM users WHERE email = $1", UNKNOWN) == 0
    finally:
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=150, help="logins per arm")
    parser.add_argument("--warmup", type=int, default=10, help="untimed logins per arm first")
    parser.add_argument("--no-control", action="store_true", help="skip the arm without the dummy verify")
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args()

    url = bench_database_url()
    migrate(url)
    os.environ.update(
        DATABASE_URL=url,
        DATABASE_URL_DIRECT=url,
        ENVIRONMENT="local",
        AUTH_RATE_LIMIT_ATTEMPTS="1000000",  # counted as in production, never limited here
    )
    run(ensure_user(url))

    import app.api.routes.auth as auth_routes
    from app.handler import handler
    from app.security import verify_password

    def leaky_verify(password: str, hashed: str | None) -> bool:
        """A naive login: nothing to compare against, so no verify at all."""
        return False if hashed is None else verify_password(password, hashed)

    arms = {"registered": REGISTERED, "unknown": UNKNOWN}
    if not args.no_control:
        arms["unknown, no dummy verify (control)"] = UNKNOWN

    def invoke(arm: str) -> float:
        auth_routes.verify_password = leaky_verify if arm.endswith("(control)") else verify_password
        event = http_api_event("POST", LOGIN, body={"username": arms[arm], "password": "a wrong password"}, form=True)
        started = time.perf_counter()
        response = handler(event, LambdaContext())
        elapsed = (time.perf_counter() - started) * 1000
        if response["statusCode"] != 401:
            raise SystemExit(f"{arm}: expected 401, got {response['statusCode']}: {response.get('body')}")
        return elapsed

    rng = random.Random(args.seed)
    for arm in list(arms) * args.warmup:
        invoke(arm)
    schedule = list(arms) * args.samples
    rng.shuffle(schedule)
    samples: dict[str, list[float]] = {arm: [] for arm in arms}
    started = time.monotonic()
    for arm in schedule:
        samples[arm].append(invoke(arm))
    auth_routes.verify_password = verify_password
    took = time.monotonic() - started

    registered = samples["registered"]
    print(
        f"\nLogin timing: {args.samples} failed logins per arm, shuffled, through app.handler.handler "
        f"(HTTP API 2.0 events), {took:.0f} s, load average {os.getloadavg()[0]:.1f}\n"
    )
    rows = []
    for arm, values in samples.items():
        median = statistics.median(values)
        if arm == "registered":
            rows.append([arm, median, p90(values), 1.0, "", "", "", ""])
            continue
        u, p, effect = mann_whitney_u(registered, values)
        shift = hodges_lehmann(registered, values)
        rows.append(
            [arm, median, p90(values), statistics.median(registered) / median, f"{u:.0f}", f"{p:.3g}", effect, shift]
        )
    print(
        table(
            [
                "arm",
                "median ms",
                "p90 ms",
                "registered / arm (medians)",
                "U",
                "p (two-sided)",
                "P(registered slower)",
                "shift ms (HL)",
            ],
            rows,
        )
    )
    print(
        "\nReading: p is the chance of a difference at least this large between two arms that cost the same; "
        "p < 0.05 with P(registered slower) away from 0.5 means an attacker could tell the arms apart."
    )


if __name__ == "__main__":
    main()
