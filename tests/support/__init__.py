"""Helpers the tests share: API calls, outage tools, the leak watch, a fake PostgreSQL endpoint."""
