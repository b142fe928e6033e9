"""The one rubric type: a WritingBench criterion and a query with its criteria."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

BANDS = ("1-2", "3-4", "5-6", "7-8", "9-10")
DOMAINS = (
    "Academic & Engineering",
    "Finance & Business",
    "Politics & Law",
    "Literature & Arts",
    "Education",
    "Advertising & Marketing",
)


def _non_empty(v: str) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError("must be a non-empty string")
    return v.strip()


class Criterion(BaseModel):
    """One WritingBench criterion: a name, a description and five score bands.

    WritingBench files spell the description ``criteria_description`` and the bands
    ``"1-2"`` ... ``"9-10"``; both spellings load (``Criterion.model_validate(row)``).
    """

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    name: str
    description: str = Field(alias="criteria_description")
    bands: dict[str, str]

    @model_validator(mode="before")
    @classmethod
    def _collect_bands(cls, data):
        if isinstance(data, dict) and "bands" not in data:
            data = dict(data)
            data["bands"] = {b: data[b] for b in BANDS if b in data}
        return data

    _check_text = field_validator("name", "description")(lambda cls, v: _non_empty(v))

    @field_validator("bands")
    @classmethod
    def _all_bands(cls, v: dict[str, str]) -> dict[str, str]:
        missing = [b for b in BANDS if not isinstance(v.get(b), str) or not v[b].strip()]
        if missing:
            raise ValueError(f"score bands {missing} missing or empty (need all of {list(BANDS)})")
        return {b: v[b].strip() for b in BANDS}

    def to_row(self) -> dict[str, str]:
        """WritingBench-format dict (``name``, ``criteria_description``, bands)."""
        return {"name": self.name, "criteria_description": self.description, **self.bands}


class RubricQuery(BaseModel):
    """A writing query with its instance-specific criteria (WritingBench shape)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    query: str
    domain: str = ""
    subdomain: str = ""
    criteria: list[Criterion] = Field(min_length=1)

    _check_text = field_validator("id", "query")(lambda cls, v: _non_empty(v))


def generic_rubric(rows: list[dict]) -> list[Criterion]:
    """Build the configured generic rubric (used when a prompt has no instance rubric)."""
    return [Criterion.model_validate(r) for r in rows]
