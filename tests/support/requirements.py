"""What a test does when a tool it needs (Node packages, PgBouncer, psql, docker compose, Python 3.13) is missing.

On a developer's machine it skips, and the reason names the one command that installs the tool. Under CI (`CI`
set) it fails instead: CI must run every test, so a missing tool there is a broken install step, not a skip.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def missing(problem: str, *, ci: str) -> NoReturn:
    """Skip with `problem` (what is missing and how to get it); under CI fail, `ci` saying what should have."""
    if os.environ.get("CI"):
        pytest.fail(f"{problem} (CI is set: {ci})", pytrace=False)
    pytest.skip(problem)
