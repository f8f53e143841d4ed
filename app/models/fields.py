"""Constrained field types shared by the request schemas: one place for each input rule.

PostgreSQL cannot store NUL characters, and a lone UTF-16 surrogate (the JSON escape `"\\ud800"` is valid
JSON) cannot be encoded as UTF-8 at all: every text input rejects both here, with a 422 naming the field,
instead of failing in the driver or the database with a 500.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, EmailStr, Field, StringConstraints

NUL_MESSAGE = "must not contain NUL characters (\\u0000)"
SURROGATE_MESSAGE = "must be valid Unicode (it contains an unpaired surrogate)"
OFFSET_MESSAGE = "needs a timezone offset, e.g. 2026-05-01T17:00:00Z or 2026-05-01T19:00:00+02:00"

MAX_TAGS = 20
TAG_MAX_LENGTH = 50


def empty_list() -> list[Any]:
    """The default factory of list fields. Not `list` itself: pydantic reads a default factory's signature, and a
    builtin's signature is parsed from its text with `tokenize`, whose patterns are compiled on first use (about
    1% of a cold start's imports, for nothing)."""
    return []


def storable_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError(NUL_MESSAGE)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(SURROGATE_MESSAGE) from None
    return value


def storable_if_text(value: object) -> object:
    # Before pydantic's own str validation, which refuses a lone surrogate with a vaguer message ("unable to
    # parse raw data as a unicode string"); anything that is not a str is left for it to refuse.
    return storable_text(value) if isinstance(value, str) else value


# Runs before the type's own validation, so both rules report their own message for every text field.
STORABLE = BeforeValidator(storable_if_text)


def require_offset(value: datetime) -> datetime:
    """Accept only timezone-aware datetimes and normalise them to UTC."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(OFFSET_MESSAGE)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+05:00 has no UTC equivalent in Python
        raise ValueError("is out of the supported date range") from None


def normalize_tag(value: str) -> str:
    storable_text(value)
    tag = value.strip().lower()
    if not 1 <= len(tag) <= TAG_MAX_LENGTH:
        raise ValueError(f"each tag must be 1 to {TAG_MAX_LENGTH} characters after trimming")
    return tag


def dedupe(tags: Iterable[str]) -> list[str]:
    """Drop repeated tags, keeping the first-seen order."""
    return list(dict.fromkeys(tags))


def limit_tags(tags: list[str]) -> list[str]:
    tags = dedupe(tags)
    if len(tags) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} distinct tags")
    return tags


StorableStr = Annotated[str, STORABLE]

Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    STORABLE,
    Field(description="1 to 200 characters after trimming surrounding whitespace.", examples=["Buy milk"]),
]
Description = Annotated[
    str,
    StringConstraints(max_length=10_000),
    STORABLE,
    Field(description="Up to 10,000 characters.", examples=["Semi-skimmed, two litres"]),
]
Tag = Annotated[
    str,
    BeforeValidator(lambda v: normalize_tag(v) if isinstance(v, str) else v),
    Field(description=f"1 to {TAG_MAX_LENGTH} characters; trimmed and lower-cased.", examples=["errand"]),
]
TagList = Annotated[
    list[Tag],
    AfterValidator(limit_tags),
    Field(
        description=f"Up to {MAX_TAGS} tags, each 1 to {TAG_MAX_LENGTH} characters. Normalised: trimmed, "
        "lower-cased, de-duplicated, first-seen order kept.",
        examples=[["errand", "home"]],
    ),
]
NOT_A_NUMBER_MESSAGE = "must be an ISO 8601 date-time string such as 2026-05-01T17:00:00Z, not a number"


_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def reject_number(value: object) -> object:
    # Pydantic would read a number, or a string of one, as Unix time (seconds, or milliseconds past a size),
    # silently: 0 and "0.5" became 1970-01-01. The schema says a date-time string, and a number is far more
    # likely a mistake than meant.
    if isinstance(value, int | float) or (isinstance(value, str) and _NUMBER.fullmatch(value)):
        raise ValueError(NOT_A_NUMBER_MESSAGE)
    return value


OffsetDatetime = Annotated[datetime, BeforeValidator(reject_number), AfterValidator(require_offset)]

# "2026-05-01T17:00:00 02:00": an unencoded "+" in a URL query arrives as a space.
_PLUS_DECODED_AS_SPACE = re.compile(r".*\d{2}:\d{2}(:\d{2}(\.\d+)?)? \d{2}(:?\d{2})?")


def hint_encoded_plus(value: object) -> object:
    if isinstance(value, str) and _PLUS_DECODED_AS_SPACE.fullmatch(value):
        raise ValueError("has a space before its offset: in a URL, write the '+' of the offset as %2B")
    return value


QueryDatetime = Annotated[
    datetime, BeforeValidator(hint_encoded_plus), BeforeValidator(reject_number), AfterValidator(require_offset)
]

Email = Annotated[EmailStr, STORABLE, AfterValidator(lambda v: v.lower()), Field(examples=["ada@example.com"])]
Password = Annotated[
    str,
    StringConstraints(min_length=8, max_length=128),
    STORABLE,
    Field(description="8 to 128 characters.", examples=["correct horse battery"]),
]
FullName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    STORABLE,
    Field(description="1 to 200 characters after trimming.", examples=["Ada Lovelace"]),
]
