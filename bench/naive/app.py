"""`GET /api/v1/tasks?tag=x` written the obvious way, as a reference for the benchmarks (never deployed).

What a developer following the SQLModel and FastAPI tutorials writes: `create_async_engine` with NullPool and
default settings (SQLAlchemy's first-connect queries included), an `AsyncSession` per request in its default
transaction (BEGIN ... ROLLBACK), the user loaded by the id in the token, the page selected with OFFSET and a
separate `count(*)` for the total. Same database, same token, same JSON shape as our endpoint's page.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, status
from fastapi.security import OAuth2PasswordBearer
from pydantic import BaseModel
from sqlalchemy import any_
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.config import settings
from app.models import Task, User
from app.security import InvalidToken, read_access_token

# NAIVE_POOL=queue gives it SQLAlchemy's default QueuePool instead, for the long-running-server comparison.
_pool = {} if os.environ.get("NAIVE_POOL") == "queue" else {"poolclass": NullPool}
engine = create_async_engine(
    settings.database.url, connect_args={"server_settings": {"application_name": "naive-reference"}}, **_pool
)

oauth2 = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token")


async def get_session() -> AsyncIterator[AsyncSession]:
    async with AsyncSession(engine) as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def current_user(session: SessionDep, token: Annotated[str, Depends(oauth2)]) -> User:
    try:
        user_id = read_access_token(token).user_id
    except InvalidToken:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Could not validate credentials") from None
    user = await session.get(User, user_id)
    if user is None or not user.is_active:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Could not validate credentials")
    return user


class TaskOut(BaseModel):
    id: uuid.UUID
    title: str
    description: str | None
    status: str
    priority: str
    due_date: datetime | None
    completed_at: datetime | None
    tags: list[str]
    created_at: datetime | None
    updated_at: datetime | None


class TaskPage(BaseModel):
    items: list[TaskOut]
    total: int


app = FastAPI(title="naive reference")


@app.get("/api/v1/tasks", response_model=TaskPage)
async def list_tasks(
    session: SessionDep,
    user: Annotated[User, Depends(current_user)],
    tag: str | None = None,
    skip: int = 0,
    limit: Annotated[int, Query(le=100)] = 20,
) -> TaskPage:
    query = select(Task).where(Task.user_id == user.id)
    if tag is not None:
        query = query.where(tag == any_(col(Task.tags)))
    tasks = (await session.exec(query.order_by(col(Task.created_at).desc()).offset(skip).limit(limit))).all()
    total = (await session.exec(select(func.count()).select_from(query.subquery()))).one()
    return TaskPage(items=[TaskOut.model_validate(t, from_attributes=True) for t in tasks], total=total)
