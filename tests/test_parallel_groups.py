"""`make test` runs with `--dist loadgroup`: tests that must not overlap (osls packaging, the concurrency races,
the mixed-load runs) share an `xdist_group` and so one worker. pytest 9.2 silently broke that grouping (xdist
marks the group in the node id, which 9.2 ignores), and two `osls package` runs then raced on one folder."""

import os

import pytest


@pytest.mark.xdist_group("grouping-proof")
def test_a_grouped_test_is_scheduled_with_its_group(request):
    if not os.environ.get("PYTEST_XDIST_WORKER") or not getattr(request.config.option, "loadgroup", False):
        pytest.skip("only meaningful under `pytest -n N --dist loadgroup` (make test)")
    assert request.node.nodeid.endswith("@grouping-proof"), request.node.nodeid
