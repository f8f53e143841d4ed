"""Task-management REST API for AWS Lambda on Neon serverless Postgres."""
