"""The naive reference: the same list endpoint written the straightforward way, measured beside ours."""
