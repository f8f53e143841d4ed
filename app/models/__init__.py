"""SQLModel tables. Importing this package registers every table on `metadata` (Alembic relies on it)."""

from app.models.auth_attempt import AuthAttempt
from app.models.base import metadata
from app.models.idempotency import IdempotencyKey
from app.models.task import Task, TaskPriority, TaskStatus
from app.models.user import User

__all__ = ["AuthAttempt", "IdempotencyKey", "Task", "TaskPriority", "TaskStatus", "User", "metadata"]
