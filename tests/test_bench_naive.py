"""The naive reference the benchmarks compare against (bench/naive) still imports and serves its one endpoint."""

from __future__ import annotations

import httpx

from tests.support.api import create_task, make_account


async def test_the_naive_reference_lists_tasks(client, db):
    from bench.naive.app import app as naive_app
    from bench.naive.app import engine

    account = await make_account(db)
    await create_task(client, account, tags=["x"])
    await create_task(client, account, tags=["y"])
    try:
        transport = httpx.ASGITransport(app=naive_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as naive:
            response = await naive.get("/api/v1/tasks", params={"tag": "x"}, headers=account.headers)
            refused = await naive.get("/api/v1/tasks", headers={"Authorization": "Bearer not-a-token"})
    finally:
        await engine.dispose()
    assert response.status_code == 200, response.text
    assert [item["tags"] for item in response.json()["items"]] == [["x"]]
    assert response.json()["total"] == 1
    assert refused.status_code == 401
