"""Helpers for the API tests: users arranged directly in the database (hashing is slow on purpose, so it is
done once per session), requests made through the real app."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

import httpx

from app.security import create_access_token, hash_password

PASSWORD = "correct horse battery"


@cache
def password_hash() -> str:
    return hash_password(PASSWORD)


@dataclass
class Account:
    id: uuid.UUID
    email: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def make_account(db, email: str | None = None) -> Account:
    email = email or f"user-{uuid.uuid4().hex[:8]}@example.com"
    user_id = await db.fetchval(
        "INSERT INTO users (email, hashed_password) VALUES ($1, $2) RETURNING id", email, password_hash()
    )
    return Account(user_id, email, create_access_token(user_id))


async def create_task(client: httpx.AsyncClient, account: Account, **fields: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/tasks", json={"title": "A task", **fields}, headers=account.headers)
    assert response.status_code == 201, response.text
    return response.json()


def error_fields(response: httpx.Response) -> set[str]:
    """The names of the fields a 422 response complains about (the last string in each error's loc)."""
    assert response.status_code == 422, response.text
    return {[part for part in error["loc"] if isinstance(part, str)][-1] for error in response.json()["detail"]}


async def insert_task(db, user_id: uuid.UUID, title: str, **fields: Any) -> uuid.UUID:
    """Arrange a task directly in the database (any column, e.g. created_at in the past)."""
    if fields.get("status") == "done":
        fields.setdefault("completed_at", fields.get("created_at") or datetime.now(UTC))
    columns = {"user_id": user_id, "title": title, **fields}
    placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    return await db.fetchval(
        f"INSERT INTO tasks ({', '.join(columns)}) VALUES ({placeholders}) RETURNING id", *columns.values()
    )
