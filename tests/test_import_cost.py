"""What keeps `import app.handler` cheap must not change what the API does or documents (bench/imports.py counts it).

- The tables (the app reads and writes rows through statements, never by validating a table model) and the
  model that only documents error bodies build their validators on first use: the OpenAPI document is the
  same either way.
- No list field uses a builtin as its default factory (pydantic would parse the builtin's signature with
  tokenize at import).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from pydantic import BaseModel

from tests.conftest import ROOT

DEFERRED = {
    "app.models.task": ["Task"],
    "app.models.user": ["User"],
    "app.models.auth_attempt": ["AuthAttempt"],
    "app.api.problems": ["ErrorMessage"],
}

OPENAPI = textwrap.dedent(
    """
    import importlib, json, sys
    from pydantic._internal._mock_val_ser import MockValSer
    import app.handler
    from app.main import app
    models = [getattr(importlib.import_module(m), n) for m, names in json.loads(sys.argv[1]).items() for n in names]
    unbuilt = sorted(m.__name__ for m in models if isinstance(m.__pydantic_validator__, MockValSer))
    if sys.argv[2] == "build-first":
        for model in models:
            model.model_rebuild(force=True)
    print(json.dumps({"unbuilt": unbuilt, "openapi": json.dumps(app.openapi())}))
    """
)


def _openapi(mode: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", OPENAPI, json.dumps(DEFERRED), mode],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(result.stdout)


def test_deferred_models_are_not_built_at_import_and_the_openapi_document_is_the_same():
    deferred, built_first = _openapi("deferred"), _openapi("build-first")
    assert deferred["unbuilt"] == sorted(name for names in DEFERRED.values() for name in names)
    assert deferred["openapi"] == built_first["openapi"]  # byte for byte


def _models() -> list[type[BaseModel]]:
    import app.api.problems
    import app.api.routes.health
    import app.config
    import app.models.auth
    import app.models.task
    import app.models.user

    modules = [app.api.problems, app.api.routes.health, app.config, app.models.auth, app.models.task, app.models.user]
    found = [v for m in modules for v in vars(m).values() if isinstance(v, type) and issubclass(v, BaseModel)]
    return [model for model in found if model.__module__.startswith("app.")]


def test_no_field_has_a_builtin_default_factory():
    builtin = [
        f"{model.__name__}.{name}"
        for model in _models()
        for name, field in model.model_fields.items()
        if field.default_factory is not None and not hasattr(field.default_factory, "__code__")
    ]
    assert len(_models()) > 10
    assert builtin == []
