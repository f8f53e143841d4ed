"""Schemas of registration, login and the access token."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.models.fields import Email, FullName, Password, StorableStr


class RegisterRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"email": "ada@example.com", "password": "correct horse battery", "full_name": "Ada"}]
        },
    )

    email: Email = Field(description="Unique ignoring case; stored lower-cased.")
    password: Password
    full_name: FullName | None = None


class LoginForm(BaseModel):
    """The OAuth2 password form (`application/x-www-form-urlencoded`) that /docs Authorize sends."""

    username: StorableStr = Field(description="The account's email address.", max_length=320)
    password: StorableStr = Field(max_length=128)
    grant_type: Literal["password"] | None = None
    scope: str = ""


class Token(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"access_token": "eyJhbGciOiJIUzI1NiIs...", "token_type": "bearer"}]}
    )

    access_token: str = Field(description="Send as `Authorization: Bearer <token>`.")
    token_type: Literal["bearer"] = "bearer"
