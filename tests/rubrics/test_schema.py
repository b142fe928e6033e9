"""The rubric type: WritingBench spelling, band checks, RubricQuery, generic rubric."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from r2_write.rubrics.schema import BANDS, Criterion, RubricQuery, generic_rubric

ROW = {"name": " Clarity ", "criteria_description": "Is it clear?", **{b: f"band {b} " for b in BANDS}}


def test_writingbench_row_round_trip():
    c = Criterion.model_validate(ROW)
    assert c.name == "Clarity" and c.description == "Is it clear?"
    assert c.bands == {b: f"band {b}" for b in BANDS}  # stripped, in band order
    assert Criterion.model_validate(c.to_row()) == c
    assert c.to_row()["criteria_description"] == "Is it clear?"


def test_field_name_spelling_and_explicit_bands():
    c = Criterion(name="X", description="d", bands={b: "t" for b in BANDS})
    assert c.to_row() == {"name": "X", "criteria_description": "d", **{b: "t" for b in BANDS}}


def test_extra_keys_ignored_and_frozen():
    c = Criterion.model_validate({**ROW, "weight": 3})
    with pytest.raises(ValidationError):
        c.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    "change, match",
    [
        ({"name": "  "}, "non-empty string"),
        ({"criteria_description": ""}, "non-empty string"),
        ({"5-6": None}, r"score bands \['5-6'\] missing or empty"),
        ({"9-10": " "}, r"score bands \['9-10'\] missing or empty"),
    ],
)
def test_invalid_criteria(change, match):
    row = {k: v for k, v in {**ROW, **change}.items() if v is not None}
    with pytest.raises(ValidationError, match=match):
        Criterion.model_validate(row)


def test_missing_description():
    row = {k: v for k, v in ROW.items() if k != "criteria_description"}
    with pytest.raises(ValidationError, match="criteria_description"):
        Criterion.model_validate(row)


def test_rubric_query():
    q = RubricQuery(id="q1", query=" Write a memo ", criteria=[ROW])
    assert q.query == "Write a memo" and q.criteria[0].name == "Clarity"
    with pytest.raises(ValidationError, match="at least 1 item"):
        RubricQuery(id="q1", query="x", criteria=[])
    with pytest.raises(ValidationError, match="non-empty"):
        RubricQuery(id=" ", query="x", criteria=[ROW])


def test_generic_rubric_from_config(project_params):
    rows = project_params.get("generic_rubric") or project_params["synthesis"]["generic_rubric"]
    crit = generic_rubric(rows)
    assert len(crit) == len(rows) >= 1
    assert all(set(c.bands) == set(BANDS) for c in crit)
