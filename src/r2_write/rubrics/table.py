"""Rubrics as table columns: attach each prompt's rubric (instance or generic fallback)."""

from __future__ import annotations

import json

import pandas as pd

from r2_write.rubrics.schema import Criterion, generic_rubric


def attach_rubrics(prompts: pd.DataFrame, rubrics: pd.DataFrame, generic: list[dict]) -> pd.DataFrame:
    """Add ``criteria`` (WritingBench JSON) and ``rubric_source`` (instance | generic).

    Args:
        prompts: Rows with an ``id`` column.
        rubrics: Accepted instance rubrics (``id``, ``criteria`` JSON).
        generic: The configured fallback rubric rows.
    """
    fallback = json.dumps([c.to_row() for c in generic_rubric(generic)], ensure_ascii=False)
    by_id = dict(zip(rubrics["id"], rubrics["criteria"])) if len(rubrics) else {}
    out = prompts.copy()
    out["rubric_source"] = ["instance" if i in by_id else "generic" for i in out["id"]]
    out["criteria"] = [by_id.get(i, fallback) for i in out["id"]]
    return out.reset_index(drop=True)


def criteria_of(criteria_json: str) -> list[Criterion]:
    """Parse a ``criteria`` cell back into criteria."""
    return [Criterion.model_validate(c) for c in json.loads(criteria_json)]
