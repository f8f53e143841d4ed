"""`alembic ...` against the configured database, starting the embedded PostgreSQL when none is configured.

Usage: python scripts/alembic_cli.py upgrade head    (what `make migrate` runs)
"""

import sys

import _bootstrap

if __name__ == "__main__":
    _bootstrap.database_ready()
    from alembic.config import main

    main(argv=sys.argv[1:], prog="alembic")
