"""The HTTP layer: routes, their dependencies, and how errors become responses."""
