"""Delete the Idempotency-Keys older than IDEMPOTENCY_KEY_TTL_HOURS (the scheduled `purge` function, run here).

python scripts/purge_idempotency_keys.py      # or: make purge-keys
"""

from __future__ import annotations

import _bootstrap


def main() -> None:
    _bootstrap.database_ready()
    from app.purge_handler import handler

    print(handler(None, None))


if __name__ == "__main__":
    main()
