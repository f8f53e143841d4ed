"""The attempt counter that rides along with the login and register statements (no round trip of its own).

`counted(limit)` gives two CTEs for the route's statement to include:
- `hit`: one upsert per client key, a fixed window per key: a window that has ended starts again at 1, else
  the count goes up by one. Concurrent attempts of one key queue on its row lock, so each sees its own count
  and together they cannot exceed the limit. Keys are upserted in sorted order, so two statements that share
  keys lock them in the same order (no deadlock).
- `cleanup`: deletes a few rows whose window has ended (found through the window_start index), so the table
  stays about as large as the number of clients seen in one window, with no scheduled job. It is not
  referenced by the main query, so PostgreSQL runs it after the main query has read `hit` (an unreferenced
  data-modifying CTE is run to completion at the end); with SKIP LOCKED it then never waits for a lock
  while holding the `hit` row locks, and it never touches this statement's own keys.
The verdict column `retry_after` is NULL within the limit, else the whole seconds until the latest window
among the keys over the limit ends.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, NamedTuple

from sqlalchemy import CTE, Integer, Interval, case, delete, func, literal, select
from sqlalchemy.dialects.postgresql import insert

from app.models.auth_attempt import AuthAttempt
from app.models.base import table_of
from app.queries import RateLimited

attempts_table = table_of(AuthAttempt)

# Expired rows removed per counted attempt: more than the at most two rows an attempt adds, so the table
# shrinks back after a burst of distinct clients.
CLEANUP_BATCH = 20


class AttemptLimit(NamedTuple):  # immutable like a frozen dataclass, and half its cost to define at import
    """Count one attempt for each of `keys`; more than `attempts` within `window_seconds` is over the limit."""

    keys: tuple[str, ...]
    attempts: int
    window_seconds: int


def counted(limit: AttemptLimit) -> tuple[CTE, CTE]:
    """(verdict, cleanup) for `limit`: a one-row CTE with `retry_after`, and the cleanup to attach with
    `add_cte`. The keys are upserted in sorted order (see the module docstring)."""
    keys = sorted(set(limit.keys))
    window = literal(timedelta(seconds=limit.window_seconds), Interval())
    ended = attempts_table.c.window_start <= func.now() - window
    hit = (
        insert(attempts_table)
        .values([{"client_key": key} for key in keys])
        .on_conflict_do_update(
            index_elements=[attempts_table.c.client_key],
            set_={
                "window_start": case((ended, func.now()), else_=attempts_table.c.window_start),
                "count": case((ended, 1), else_=attempts_table.c.count + 1),
            },
        )
        .returning(attempts_table.c.count, attempts_table.c.window_start)
        .cte("hit")
    )
    seconds_left = func.ceil(func.extract("epoch", hit.c.window_start + window - func.now()))
    over = case((hit.c.count > limit.attempts, seconds_left))
    verdict = select(func.max(over).cast(Integer).label("retry_after")).cte("verdict")
    stale = (
        select(attempts_table.c.client_key)
        .where(attempts_table.c.window_start <= func.now() - window, attempts_table.c.client_key.not_in(keys))
        .order_by(attempts_table.c.window_start)
        .limit(CLEANUP_BATCH)
        .with_for_update(skip_locked=True)
    )
    cleanup = delete(attempts_table).where(attempts_table.c.client_key.in_(stale)).cte("cleanup")
    return verdict, cleanup


def raise_if_limited(row: Any) -> None:
    if row.retry_after is not None:
        raise RateLimited(max(int(row.retry_after), 1))
