"""The mixed load's client: `concurrency` virtual users, each with an async httpx client, `total` requests in all.

Each virtual user registers, logs in once (keeping logins few: the login rate limit is per client IP), then
cycles through the API's reads and writes on its own tasks: create, get, patch with If-Match, list with filters
and the next page by cursor, tags, delete with If-Match, users/me, health/db. Users never touch each other's
tasks, so every answer has exactly one right status; anything else is counted as an error, by type.
Shared by tests/pooler/test_load.py (which asserts) and bench/load.py (which prints).
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

API = "/api/v1"
PASSWORD = "load-test-password"
REQUEST_TIMEOUT = 30.0  # seconds; a hang guard, far above any healthy request here
# Idle keep-alive connections are dropped by the client well before uvicorn closes them (--timeout-keep-alive,
# 5 s). With both at 5 s (httpx's default) a request sent on a connection the server is closing at that moment
# fails with ReadError: 2 and 5 of 10,000 requests in two runs here, 0 in every run with 2 s. The same rule
# holds for any proxy in front of uvicorn: its idle timeout must be shorter than the server's.
KEEPALIVE_EXPIRY = 2.0
PROGRESS_MARKS = 20  # the wall time at every 5% of the requests, to find the run's halves afterwards
# Password hashing (argon2, deliberately slow) dominates these; the others are the API's everyday requests.
SIGN_IN = frozenset({"register", "login"})
PRIORITIES = ["low", "medium", "high", "urgent"]
STATUSES = ["in_progress", "done", "todo"]


@dataclass
class LoadReport:
    total: int
    concurrency: int
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    issued: int = 0
    completed: int = 0
    by_step: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=dict)  # step -> seconds, every answered request
    marks: list[float] = field(default_factory=list)  # time.time() when 1/20, 2/20, ... of the requests were done
    started: float = 0.0
    finished: float = 0.0
    live_tasks: dict[str, set[str]] = field(default_factory=dict)  # email -> ids the API says exist

    def take(self) -> bool:
        """One more request of the budget, if any is left."""
        if self.issued >= self.total:
            return False
        self.issued += 1
        return True

    def answered(self, step: str, seconds: float) -> None:
        self.completed += 1
        self.by_step[step] += 1
        self.latencies.setdefault(step, []).append(seconds)
        while (
            len(self.marks) < PROGRESS_MARKS and self.completed >= self.total * (len(self.marks) + 1) / PROGRESS_MARKS
        ):
            self.marks.append(time.time())

    def failed(self, step: str, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        if len(self.error_samples) < 10:
            self.error_samples.append(f"{step} at {time.time() - self.started:.1f} s: {kind} {detail[:200]}")

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def seconds(self) -> float:
        return self.finished - self.started

    def percentile_ms(self, percent: int, *, without: frozenset[str] = frozenset()) -> float:
        """The latency percentile of every answered request, or of those of the steps not in `without`."""
        samples = [s for step, values in self.latencies.items() if step not in without for s in values]
        cuts = statistics.quantiles(samples, n=100, method="inclusive")
        return round(cuts[percent - 1] * 1000, 1)

    def time_at(self, fraction: float) -> float:
        """When `fraction` (a multiple of 1/20) of the requests had been answered."""
        return self.marks[round(fraction * PROGRESS_MARKS) - 1]


class VirtualUser:
    """One user's session: its token, its tasks (id -> version, oldest first) and its list cursor."""

    def __init__(self, http: httpx.AsyncClient, report: LoadReport, index: int) -> None:
        self.http, self.report, self.index = http, report, index
        self.email = f"load-{report.run_id}-{index}@example.com"
        self.tag = f"u{index}"
        self.headers: dict[str, str] = {}
        self.versions: dict[str, int] = {}
        self.cursor: str | None = None
        self.step = 0

    async def call(self, step: str, expected: int, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            response = await self.http.request(method, path, **kwargs)
        except httpx.HTTPError as error:  # connection refused or reset, timeouts: each counted by type
            self.report.failed(step, type(error).__name__, str(error))
            return None
        self.report.answered(step, time.perf_counter() - started)
        if response.status_code != expected:
            self.report.failed(step, f"HTTP {response.status_code}", response.text)
            return None
        return response

    async def sign_in(self) -> bool:
        credentials = {"email": self.email, "password": PASSWORD}
        if (
            not self.report.take()
            or await self.call("register", 201, "POST", f"{API}/auth/register", json=credentials) is None
        ):
            return False
        if not self.report.take():
            return False
        form = {"username": self.email.upper(), "password": PASSWORD}
        response = await self.call("login", 200, "POST", f"{API}/auth/token", data=form)
        if response is None:
            return False
        self.headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
        return True

    def _keep(self, step: str, response: httpx.Response) -> None:
        task = response.json()
        if response.headers.get("ETag") != f'"{task["version"]}"':
            self.report.failed(step, "wrong ETag", f"{response.headers.get('ETag')} for version {task['version']}")
        self.versions[task["id"]] = task["version"]

    async def create(self) -> None:
        n = self.step
        body = {"title": f"load {self.index}-{n}", "priority": PRIORITIES[n % 4], "tags": [self.tag, f"n{n % 3}"]}
        if response := await self.call("create", 201, "POST", f"{API}/tasks", json=body, headers=self.headers):
            self._keep("create", response)

    async def get(self, task_id: str) -> None:
        if response := await self.call("get", 200, "GET", f"{API}/tasks/{task_id}", headers=self.headers):
            self._keep("get", response)

    async def patch(self, task_id: str) -> None:
        headers = {**self.headers, "If-Match": f'"{self.versions[task_id]}"'}
        body = {"status": STATUSES[self.step % 3], "description": f"step {self.step}"}
        if response := await self.call("patch", 200, "PATCH", f"{API}/tasks/{task_id}", json=body, headers=headers):
            self._keep("patch", response)

    async def delete(self, task_id: str) -> None:
        headers = {**self.headers, "If-Match": f'"{self.versions[task_id]}"'}
        if await self.call("delete", 204, "DELETE", f"{API}/tasks/{task_id}", headers=headers) is not None:
            del self.versions[task_id]

    async def list_page(self) -> None:
        params = {"tag": self.tag, "sort": "-created_at", "limit": "3"}
        step = "list"
        if self.cursor:
            params["cursor"], step = self.cursor, "list_next_page"
        if response := await self.call(step, 200, "GET", f"{API}/tasks", params=params, headers=self.headers):
            self.cursor = response.json()["next_cursor"]

    async def list_filtered(self) -> None:
        params = {"status": ["todo", "in_progress"], "priority": ["high", "urgent"], "q": "load", "limit": "20"}
        await self.call("list_filtered", 200, "GET", f"{API}/tasks", params=params, headers=self.headers)

    async def next_request(self) -> None:
        """One request of a 10-step cycle: 4 writes (2 creates, a patch, a delete), 6 reads."""
        kind, self.step = self.step % 10, self.step + 1
        newest = next(reversed(self.versions), None)
        if kind in (0, 6) or newest is None:
            await self.create()
        elif kind == 1:
            await self.get(newest)
        elif kind == 2:
            await self.patch(newest)
        elif kind == 3:
            await self.list_page()
        elif kind == 4:
            await self.list_filtered()
        elif kind == 5:
            await self.call("tags", 200, "GET", f"{API}/tags", headers=self.headers)
        elif kind == 7:
            await self.delete(next(iter(self.versions)))  # the oldest
        elif kind == 8:
            await self.call("users_me", 200, "GET", f"{API}/users/me", headers=self.headers)
        else:
            await self.call("health_db", 200, "GET", f"{API}/health/db")

    async def run(self) -> None:
        if await self.sign_in():
            while self.report.take():
                await self.next_request()
        self.report.live_tasks[self.email] = set(self.versions)


async def run_load(base_url: str, total: int, concurrency: int) -> LoadReport:
    """Send `total` requests to the server at `base_url`, `concurrency` at a time."""
    report = LoadReport(total, concurrency)
    # Each virtual user has a client of its own with one connection, as a real user's browser or app would. One
    # client shared by all of them costs more than the server does: httpx's pool walks every connection and
    # every waiting request whenever any request starts or ends, quadratic in the concurrency.
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=KEEPALIVE_EXPIRY)
    tls = httpx.create_ssl_context()  # unused (plain HTTP), but each client would otherwise load the CA bundle

    async def virtual_user(index: int) -> None:
        async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=REQUEST_TIMEOUT, verify=tls) as http:
            await VirtualUser(http, report, index).run()

    report.started = time.time()
    await asyncio.gather(*(virtual_user(index) for index in range(concurrency)))
    report.finished = time.time()
    return report


async def lost_writes(database_url: str, report: LoadReport) -> dict[str, str]:
    """Users whose tasks in the database differ from what the API told them (created, not deleted)."""
    import asyncpg

    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT users.email, coalesce(array_agg(tasks.id::text) FILTER (WHERE tasks.id IS NOT NULL), '{}') AS ids "
            "FROM users LEFT JOIN tasks ON tasks.user_id = users.id WHERE users.email = ANY($1) GROUP BY users.email",
            list(report.live_tasks),
        )
    finally:
        await connection.close()
    held = {row["email"]: set(row["ids"]) for row in rows}
    return {
        email: f"API: {len(ids)} tasks, database: {len(held.get(email, set()))}"
        for email, ids in report.live_tasks.items()
        if held.get(email) != ids
    }
