"""All SQL of the API, one module per entity; each function runs one statement where the work allows it.

The outcomes a statement can report besides success are these exceptions; app/api/problems.py turns them
into HTTP responses.
"""


class AccountGone(Exception):
    """The token is valid but its user no longer exists (deleted), is inactive, or changed password since."""


class TaskNotFound(Exception):
    """No such task for this user. Another user's task is reported the same way, on purpose."""


class VersionMismatch(Exception):
    """If-Match named a version other than the task's current one; nothing was written."""

    def __init__(self, current: int) -> None:
        super().__init__(current)
        self.current = current


class PasswordChangedConcurrently(Exception):
    """The password hash changed between reading it and writing the new one."""


class RateLimited(Exception):
    """Too many attempts from this client in the current window; nothing else was done."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


class IdempotencyKeyReused(Exception):
    """The key was used, within its lifetime, for a request with another fingerprint; nothing was written."""


class IdempotencyKeyInFlight(Exception):
    """A request with this key is still being processed (or lost a race twice); nothing was written."""

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after
