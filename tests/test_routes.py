"""Every route of the app has an example request in tests/support/routes.py, which the tests that must reach
every route (outages, token attacks, dependency overrides, the Lambda outage) send."""

from tests.support.routes import EXAMPLES, api_operations, missing_examples


def test_every_route_has_an_example_request():
    missing = missing_examples()
    assert not missing, (
        f"add an example request that succeeds to EXAMPLES in tests/support/routes.py for: {', '.join(missing)} "
        "(its json, params or form; `{task_id}` is a task of the test's user): the outage, token-attack and "
        "dependency-override tests then cover the route too"
    )


def test_every_example_names_a_route_of_the_app():
    assert set(EXAMPLES) <= set(api_operations()), set(EXAMPLES) - set(api_operations())
