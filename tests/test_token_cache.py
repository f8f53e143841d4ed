"""A token verified once is remembered (app.security), but a remembered token is held to the clock and the key."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from app import security
from app.config import settings
from app.security import InvalidToken, create_access_token, read_access_token


def test_a_remembered_token_still_expires(monkeypatch):
    user = uuid.uuid4()
    token = create_access_token(user, minutes=1)
    assert read_access_token(token).user_id == user
    assert token in security._verified  # the next read is a hit
    later = datetime.now(UTC) + timedelta(minutes=2)
    monkeypatch.setattr(security.time, "time", lambda: later.timestamp())
    with pytest.raises(InvalidToken):
        read_access_token(token)


def test_a_remembered_token_is_not_valid_before_it_was_issued(monkeypatch):
    token = create_access_token(uuid.uuid4())
    read_access_token(token)
    earlier = datetime.now(UTC) - timedelta(minutes=5)
    monkeypatch.setattr(security.time, "time", lambda: earlier.timestamp())
    with pytest.raises(InvalidToken):
        read_access_token(token)


def test_a_remembered_token_is_refused_once_the_key_changes(monkeypatch):
    token = create_access_token(uuid.uuid4())
    read_access_token(token)
    monkeypatch.setattr(type(settings), "secret_key", property(lambda self: "another-secret-key-of-32-characters!!"))
    with pytest.raises(InvalidToken):
        read_access_token(token)


def test_the_memory_is_bounded():
    for _ in range(security.VERIFIED_TOKENS_KEPT + 10):
        read_access_token(create_access_token(uuid.uuid4(), now=datetime.now(UTC) - timedelta(seconds=1)))
    assert len(security._verified) == security.VERIFIED_TOKENS_KEPT
