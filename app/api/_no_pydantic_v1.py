"""Keep FastAPI from importing `pydantic.v1` just to prove that no model is a pydantic v1 model.

FastAPI 0.12x+ checks every response model and body type with `issubclass(cls, pydantic.v1.BaseModel)`, which
imports the whole pydantic.v1 compatibility package (~35 ms of CPU, ~8% of the library floor) on every Lambda
cold start. When nothing has imported pydantic.v1, no class can derive from it, so the answer is already
known to be False; once anything imports it, FastAPI's own check runs unchanged. If a FastAPI release renames
these helpers, this does nothing (tests/aws_lambda/test_handler.py notices the import coming back).
"""

import functools
import sys
from collections.abc import Callable
from typing import Any

from fastapi import encoders
from fastapi._compat import shared

V1 = "pydantic.v1"


def _wrap(original: Callable[[Any], bool]) -> Callable[[Any], bool]:
    @functools.wraps(original)  # sets __wrapped__, which marks a helper as already wrapped
    def check(obj: Any) -> bool:
        return V1 in sys.modules and original(obj)

    return check


for _module, _name in (
    (shared, "is_pydantic_v1_model_class"),
    (shared, "is_pydantic_v1_model_instance"),
    (encoders, "is_pydantic_v1_model_instance"),  # imported by name there
):
    _original = getattr(_module, _name, None)
    if _original is not None and not hasattr(_original, "__wrapped__"):
        setattr(_module, _name, _wrap(_original))
