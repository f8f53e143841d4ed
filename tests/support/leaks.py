"""Secrets that must never leave the app: what they are in this test session, and how to look for them.

tests/conftest.py gives the session a database password and a SECRET_KEY nobody could mistake for anything
else, and its autouse `leak_watch` fixture feeds through `LeakWatch.scan`: every log record of the test
process (all loggers, DEBUG), every response an httpx client of the test process receives (the `client`
fixture, tests' own ASGI clients, the client talking to `osls offline`), and every response of the Lambda
`invoke` fixture. A finding names the secret's kind and where it appeared; it never repeats the secret.

Not covered: what subprocesses log (the awslambdaric bootstrap, uvicorn and the load workers of the pooler
proof, `osls offline`'s own output, the scripts run as processes), responses read with `client.stream()`, and
handlers called directly rather than through `invoke`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from app.observability import JsonFormatter

PASSWORD_HASH = re.compile(r"\$argon2(id|i|d)\$")
ACCESS_TOKEN = re.compile(r"eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.")  # a JWT: base64url('{"') header and claims
# The tests' own HTTP client logs the URLs it requests ("HTTP Request: GET ...?access_token=..."): what the test
# sent, not what the app emitted (the app has no HTTP client). Its responses are scanned instead.
TEST_CLIENT_LOGGERS = frozenset({"httpx", "httpcore"})
# A password shorter than this could occur by chance in a response (TEST_DATABASE_URL may use `postgres`).
MIN_DISTINCTIVE = 12


@dataclass
class Secrets:
    """The session's secrets by name; the database password only when it is distinctive enough to look for."""

    literals: dict[str, str]

    @classmethod
    def of(cls, database_password: str | None, secret_key: str) -> Secrets:
        literals = {"SECRET_KEY": secret_key}
        if database_password and len(database_password) >= MIN_DISTINCTIVE:
            literals["the database password"] = database_password
        return cls(literals)

    def found_in(self, text: str, *, tokens: bool) -> list[str]:
        found = [name for name, secret in self.literals.items() if secret in text]
        if PASSWORD_HASH.search(text):
            found.append("a password hash")
        if tokens and ACCESS_TOKEN.search(text):
            found.append("an access token")
        return found


@dataclass
class LeakWatch:
    secrets: Secrets
    findings: list[str] = field(default_factory=list)
    scanned: int = 0

    def scan(self, where: str, text: str, *, tokens: bool) -> None:
        """Tokens are looked for in logs only: a login response rightly carries one."""
        self.scanned += 1
        for name in self.secrets.found_in(text, tokens=tokens):
            self.findings.append(f"{name} in {where}")


class LeakHandler(logging.Handler):
    """Scans each record as our JSON line and as the stdlib's default text (message plus full traceback,
    exception messages included): what any handler a host configures could print."""

    json_formatter = JsonFormatter()
    text_formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")

    def __init__(self, watch: LeakWatch) -> None:
        super().__init__(level=logging.DEBUG)
        self.watch = watch

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.split(".", 1)[0] in TEST_CLIENT_LOGGERS:
            return
        try:
            text = self.json_formatter.format(record) + "\n" + self.text_formatter.format(record)
        except Exception as error:  # noqa: BLE001 - a record that cannot be formatted is a finding too
            self.watch.findings.append(f"an unformattable record from {record.name} ({type(error).__name__})")
            return
        self.watch.scan(f"a log record of {record.name} ({record.levelname})", text, tokens=True)
