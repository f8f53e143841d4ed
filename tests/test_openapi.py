"""The published contract: every route documented with a summary, a stable operation id and its errors."""

from __future__ import annotations

EXPECTED_OPERATIONS = {
    ("post", "/api/v1/auth/register"): ("auth_register", {"201", "409", "415", "422", "429"}),
    ("post", "/api/v1/auth/token"): ("auth_token", {"200", "401", "415", "422", "429"}),
    ("get", "/api/v1/users/me"): ("users_get_me", {"200", "401"}),
    ("patch", "/api/v1/users/me"): ("users_update_me", {"200", "400", "401", "415", "422"}),
    ("delete", "/api/v1/users/me"): ("users_delete_me", {"204", "401"}),
    ("get", "/api/v1/tasks"): ("tasks_list", {"200", "401", "422"}),
    ("post", "/api/v1/tasks"): ("tasks_create", {"201", "401", "415", "422"}),
    ("get", "/api/v1/tasks/{task_id}"): ("tasks_get", {"200", "401", "404", "422"}),
    ("patch", "/api/v1/tasks/{task_id}"): ("tasks_update", {"200", "400", "401", "404", "412", "415", "422"}),
    ("delete", "/api/v1/tasks/{task_id}"): ("tasks_delete", {"204", "400", "401", "404", "412", "422"}),
    ("get", "/api/v1/tags"): ("tags_list", {"200", "401"}),
}


async def test_every_route_has_a_summary_a_description_and_a_unique_operation_id(client):
    spec = (await client.get("/openapi.json")).json()
    operations = [(method, path, op) for path, item in spec["paths"].items() for method, op in item.items()]
    ids = [op["operationId"] for _, _, op in operations]
    assert len(ids) == len(set(ids))
    for method, path, op in operations:
        assert op.get("summary"), (method, path)
        assert op.get("description"), (method, path)
    for (method, path), (operation_id, statuses) in EXPECTED_OPERATIONS.items():
        op = spec["paths"][path][method]
        assert op["operationId"] == operation_id
        assert statuses <= set(op["responses"]), (operation_id, set(op["responses"]))
        if "401" in statuses and operation_id != "auth_token":
            assert op["security"] == [{"OAuth2PasswordBearer": []}], operation_id


async def test_every_operation_documents_413_and_every_one_with_a_body_415(client):
    """Any request can be too large (app.api.limits refuses it before routing); only a body has a media type."""
    spec = (await client.get("/openapi.json")).json()
    for path, item in spec["paths"].items():
        for method, op in item.items():
            assert "413" in op["responses"], (method, path)
            assert ("415" in op["responses"]) == ("requestBody" in op), (method, path)
            assert "1 MB" in op["responses"]["413"]["description"]


async def test_every_database_backed_operation_documents_503_and_504(client):
    """app/errors.py answers an unreachable database with 503 and a statement past its timeout with 504."""
    spec = (await client.get("/openapi.json")).json()
    for path, item in spec["paths"].items():
        if path.startswith("/api/v1/health"):
            continue  # liveness never touches the database; readiness documents its own 503 body
        for method, op in item.items():
            assert {"503", "504"} <= set(op["responses"]), (method, path)
            assert "Retry-After" in op["responses"]["503"]["headers"], (method, path)


async def test_schemas_carry_examples_and_the_due_date_rule(client):
    spec = (await client.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    for name in ("TaskCreate", "TaskUpdate", "TaskRead", "TaskPage", "RegisterRequest", "Token", "UserRead"):
        assert schemas[name].get("examples"), name
    assert "offset" in schemas["TaskCreate"]["properties"]["due_date"]["description"]
    assert "hashed_password" not in schemas["UserRead"]["properties"]
    list_params = {p["name"] for p in spec["paths"]["/api/v1/tasks"]["get"]["parameters"]}
    assert list_params == {
        "status",
        "priority",
        "tag",
        "any_tag",
        "overdue",
        "due_before",
        "due_after",
        "q",
        "sort",
        "limit",
        "cursor",
    }
    token_url = spec["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]["password"]["tokenUrl"]
    assert token_url == "/api/v1/auth/token"


async def test_docs_page_is_served(client):
    response = await client.get("/docs")
    assert response.status_code == 200 and "swagger" in response.text.lower()


async def test_every_schema_reference_resolves(client):
    """Some responses name ErrorMessage's schema by reference (app.api.problems.documented(by_reference=True))."""
    spec = (await client.get("/openapi.json")).json()
    references: list[str] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                references.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec)
    assert "#/components/schemas/ErrorMessage" in references
    for reference in references:
        assert reference.startswith("#/components/schemas/"), reference
        assert reference.removeprefix("#/components/schemas/") in spec["components"]["schemas"], reference


async def test_every_route_with_a_body_checks_its_media_type(client, db):
    """Every example with a body (tests/support/routes.py: every route has one), sent as text/plain, is a 415."""
    from tests.support.api import make_account
    from tests.support.routes import EXAMPLES, url_of

    account = await make_account(db)
    with_body = {key: example for key, example in EXAMPLES.items() if example.json is not None or example.form}
    assert len(with_body) >= 5
    for (method, path), example in with_body.items():
        body = example.json if example.json is not None else example.form
        response = await client.request(
            method,
            url_of(path, "3c5a0a7e-35c3-4a2b-9b0e-1a2b3c4d5e6f"),
            content=str(body).encode(),
            headers={**account.headers, "Content-Type": "text/plain"},
        )
        assert response.status_code == 415, (method, path, response.text)


async def test_idempotency_key_is_documented_on_the_keyed_writes(client):
    spec = (await client.get("/openapi.json")).json()
    keyed = {("post", "/api/v1/tasks"), ("patch", "/api/v1/tasks/{task_id}")}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            names = [parameter["name"] for parameter in operation.get("parameters", [])]
            assert ("Idempotency-Key" in names) == ((method, path) in keyed), (method, path)
    for method, path in keyed:
        operation = spec["paths"][path][method]
        (header,) = [p for p in operation["parameters"] if p["name"] == "Idempotency-Key"]
        assert header["in"] == "header" and not header.get("required", False)
        assert "Idempotent-Replayed" in header["description"]
        responses = operation["responses"]
        for status, name in (("400", "malformed_idempotency_key"), ("409", "idempotency_key_in_flight")):
            assert name in responses[status]["content"]["application/json"]["examples"], (method, status)
        assert "retry-after" in {h.lower() for h in responses["409"]["headers"]}
        # 422: the key's reuse beside FastAPI's own validation errors, both in the schema.
        unprocessable = responses["422"]["content"]["application/json"]
        assert "idempotency_key_reused" in unprocessable["examples"]
        refs = {option["$ref"].rsplit("/", 1)[1] for option in unprocessable["schema"]["anyOf"]}
        assert refs == {"HTTPValidationError", "ErrorMessage"}
