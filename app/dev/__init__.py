"""Development-only helpers (embedded PostgreSQL). Never imported on the Lambda request path."""
