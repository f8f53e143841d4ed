"""Every route of the app has an example request in tests/support/routes.py, which the tests that must reach
every route (outages, token attacks, dependency overrides, the Lambda outage) send."""

from tests.support.api import make_account
from tests.support.routes import EXAMPLES, api_operations, arranged_ids, missing_examples, url_of


def test_every_route_has_an_example_request():
    missing = missing_examples()
    assert not missing, (
        f"add an example request that succeeds to EXAMPLES in tests/support/routes.py for: {', '.join(missing)} "
        "(its json, params or form; a path parameter such as `{project_id}` is filled with the id that the "
        "collection's POST example creates, so a new resource needs that POST example too): the outage, "
        "token-attack and dependency-override tests then cover the route too"
    )


async def test_every_path_parameter_is_arranged_from_its_collections_post(client, db):
    account = await make_account(db)
    ids = await arranged_ids(client, account.headers)
    for method, path in EXAMPLES:
        url = url_of(path, ids)
        assert "{" not in url, (method, path)
    task = await client.get(url_of("/api/v1/tasks/{task_id}", ids), headers=account.headers)
    assert task.status_code == 200  # a real task of this user


def test_every_example_names_a_route_of_the_app():
    assert set(EXAMPLES) <= set(api_operations()), set(EXAMPLES) - set(api_operations())
