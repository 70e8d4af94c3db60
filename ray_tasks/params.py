"""The base of every stage's typed parameters (``ray_tasks/<stage>/params.py``).

Why Pydantic: the same models validate ``params.yaml`` with errors that name the
offending key, are the Prefect flow parameters (the UI renders them as a form) and
flatten into MLflow params. A field's docstring is its description (litgpt style),
so the docs, the form and ``starflow params`` say the same thing.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StageParams(BaseModel):
    """Strict (an unknown key is an error), documented by attribute docstrings, immutable."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)
