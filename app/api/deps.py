"""`Annotated` dependency aliases used by the routes."""

from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.db import autocommit_connection, transaction_session

# One statement per request (reads, INSERT/UPDATE/DELETE ... RETURNING): autocommit, no BEGIN/COMMIT.
ConnectionDep = Annotated[AsyncConnection, Depends(autocommit_connection)]
# Several statements that must succeed or fail together: one transaction for the request.
SessionDep = Annotated[AsyncSession, Depends(transaction_session)]
