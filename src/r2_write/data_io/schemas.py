"""Row schemas of the project's input files: raw prompts, WritingBench and DeepResearchGym.

Each row model validates one line (or one table row); :func:`validate_row` turns the first
problem into one :class:`InputDataError` naming where it is and the field, for example::

    data/01_raw/prompts.jsonl line 7, field 'domain': unknown domain 'Sport'; expected one of ...
    format_subset.jsonl line 12, field 'criteria[2].9-10': must not be empty

Field paths use JSON-path style with 0-based list positions (``criteria[2]`` is the third
criterion). Text fields are stripped and at most ``max_chars`` long (validation context).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Annotated, Any

import pandas as pd
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from r2_write.rubrics.schema import DOMAINS, Criterion, RubricQuery

MAX_CHARS = 100_000
"""Default upper bound on the length of any one text field (characters)."""

LANGUAGES = ("en", "zh")


class InputDataError(ValueError):
    """An input file or table is malformed; the message names the file, line/row and field."""


# --------------------------------------------------------------------------- field checks


def type_name(v: Any) -> str:
    """What a JSON value is, for messages (``"integer"``, ``"list"``, ``"number inf"``...)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, numbers.Integral):
        return "integer"
    if isinstance(v, numbers.Real):
        return f"number {v!r}" if not math.isfinite(v) else "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (list, tuple)):
        return "list"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def short_text(v: str, n: int = 60) -> str:
    """``repr`` of ``v`` cut to ``n`` characters, for messages."""
    return repr(v if len(v) <= n else v[:n] + "...")


def _max_chars(info: ValidationInfo) -> int:
    ctx = info.context or {}
    return int(ctx.get("max_chars", MAX_CHARS))


def _check_str(v: Any, info: ValidationInfo, *, allow_empty: bool) -> str:
    if not isinstance(v, str):
        raise ValueError(f"expected a string, got {type_name(v)}")
    v = v.strip()
    if not v and not allow_empty:
        raise ValueError("must not be empty")
    limit = _max_chars(info)
    if len(v) > limit:
        raise ValueError(
            f"text is {len(v):,} characters long, over the limit of {limit:,} "
            "(pass a larger max_chars to the loader to accept it)"
        )
    try:
        v.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"contains an unpaired surrogate escape (\\u{ord(v[exc.start]):04x}) at position {exc.start}"
        ) from None
    return v


def _text(v: Any, info: ValidationInfo) -> str:
    return _check_str(v, info, allow_empty=False)


def _optional_text(v: Any, info: ValidationInfo) -> str:
    return "" if v is None else _check_str(v, info, allow_empty=True)


def _identifier(v: Any, info: ValidationInfo) -> str:
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        return str(int(v))
    if isinstance(v, str):
        return _text(v, info)
    raise ValueError(f"expected a string or integer id, got {type_name(v)}")


def _one_of(what: str, allowed: tuple[str, ...]):
    """A check that a text is one of ``allowed`` (``unknown <what> 'x'; expected one of ...``)."""

    def check(v: Any, info: ValidationInfo) -> str:
        v = _text(v, info)
        if v not in allowed:
            raise ValueError(f"unknown {what} {short_text(v)}; expected one of {', '.join(map(repr, allowed))}")
        return v

    return check


_domain = _one_of("domain", DOMAINS)
_language = _one_of("language", LANGUAGES)


def _optional_domain(v: Any, info: ValidationInfo) -> str:
    v = _optional_text(v, info)
    return _domain(v, info) if v else v


def _positive_int(v: Any, info: ValidationInfo) -> int:
    if not isinstance(v, numbers.Integral) or isinstance(v, bool):
        raise ValueError(f"expected a positive integer, got {type_name(v)}")
    if v < 1:
        raise ValueError(f"expected a positive integer, got {int(v)}")
    return int(v)


def _non_empty_list(v: Any) -> Any:
    if isinstance(v, list) and not v:
        raise ValueError("must hold at least one item, got an empty list")
    return v


Text = Annotated[str, BeforeValidator(_text)]
OptionalText = Annotated[str, BeforeValidator(_optional_text)]
Identifier = Annotated[str, BeforeValidator(_identifier)]
Domain = Annotated[str, BeforeValidator(_domain)]
OptionalDomain = Annotated[str, BeforeValidator(_optional_domain)]
Language = Annotated[str, BeforeValidator(_language)]
PositiveInt = Annotated[int, BeforeValidator(_positive_int)]


def is_missing(v: Any) -> bool:
    """None, pandas NA or NaN (an empty cell)."""
    if v is None or v is pd.NA:
        return True
    return isinstance(v, float) and math.isnan(v)


# --------------------------------------------------------------------------- row models


class PromptRow(BaseModel):
    """One raw writing prompt (a line of ``data/01_raw/prompts.jsonl``).

    >>> PromptRow(id="p001", domain="Education", prompt="Explain ratios to a 12-year-old.").language
    'en'
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: Identifier
    domain: Domain
    language: Language = "en"
    prompt: Text


class KeyPoint(BaseModel):
    """One DeepResearchGym ground-truth key point."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    point_number: PositiveInt
    point_content: Text


class DRGQuery(BaseModel):
    """A DeepResearchGym query with its key points (``queries.jsonl`` line)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: Identifier
    query: Text
    key_points: list[KeyPoint]

    @field_validator("key_points")
    @classmethod
    def _unique_numbers(cls, v: list[KeyPoint]) -> list[KeyPoint]:
        seen: dict[int, int] = {}
        for i, kp in enumerate(v):
            if kp.point_number in seen:
                raise ValueError(
                    f"point_number {kp.point_number} appears twice "
                    f"(key_points[{seen[kp.point_number]}] and key_points[{i}])"
                )
            seen[kp.point_number] = i
        return v


class WritingBenchCriterion(BaseModel):
    """A criterion as WritingBench spells it (bands as ``"1-2"`` ... ``"9-10"`` keys)."""

    model_config = ConfigDict(extra="ignore")

    name: Text
    criteria_description: Text
    band_1_2: Text = Field(alias="1-2")
    band_3_4: Text = Field(alias="3-4")
    band_5_6: Text = Field(alias="5-6")
    band_7_8: Text = Field(alias="7-8")
    band_9_10: Text = Field(alias="9-10")

    @model_validator(mode="before")
    @classmethod
    def _description_alias(cls, data: Any) -> Any:
        if isinstance(data, dict) and "criteria_description" not in data and "description" in data:
            data = {**data, "criteria_description": data["description"]}
        return data

    def to_criterion(self) -> Criterion:
        return Criterion.model_validate(self.model_dump(by_alias=True))


class WritingBenchRow(BaseModel):
    """A line of a WritingBench file (``criteria`` or ``checklist``, read as ``criteria``)."""

    model_config = ConfigDict(extra="ignore")

    index: Identifier
    domain1: Domain
    domain2: OptionalText = ""
    query: Text
    criteria: Annotated[list[WritingBenchCriterion], BeforeValidator(_non_empty_list)]

    def to_query(self) -> RubricQuery:
        crit = [c.to_criterion() for c in self.criteria]
        return RubricQuery(id=self.index, query=self.query, domain=self.domain1, subdomain=self.domain2, criteria=crit)


class RubricQueryRow(BaseModel):
    """A row of a rubric-query table (:func:`~r2_write.data_io.loaders.writingbench_frame` shape)."""

    model_config = ConfigDict(extra="ignore")

    id: Identifier
    domain: OptionalDomain = ""
    subdomain: OptionalText = ""
    query: Text
    criteria: Annotated[list[WritingBenchCriterion], BeforeValidator(_non_empty_list)]

    def to_query(self) -> RubricQuery:
        crit = [c.to_criterion() for c in self.criteria]
        return RubricQuery(id=self.id, query=self.query, domain=self.domain, subdomain=self.subdomain, criteria=crit)


# --------------------------------------------------------------------------- row validation

_ERROR_TEXT = {
    "missing": "required field is missing",
    "list_type": "expected a list",
    "model_type": "expected a JSON object",
    "model_attributes_type": "expected a JSON object",
    "dict_type": "expected a JSON object",
}


def _loc_path(loc: tuple, rename: Mapping[str, str] | None = None) -> str:
    """``("criteria", 2, "9-10")`` -> ``"criteria[2].9-10"``; ``rename`` maps top-level field names."""
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            part = (rename or {}).get(part, part) if i == 0 else str(part)
            out += part if not out else f".{part}"
    return out


def validate_row(
    model: type[BaseModel], obj: dict, where: str, max_chars: int, rename: Mapping[str, str] | None = None
):
    """Validate one row; raise :class:`InputDataError` naming ``where`` and the first bad field."""
    try:
        return model.model_validate(obj, context={"max_chars": max_chars})
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        err = errors[0]
        msg = str(err["msg"])
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        elif err["type"] in _ERROR_TEXT:
            msg = _ERROR_TEXT[err["type"]]
            if err["type"] != "missing":
                msg += f", got {type_name(err.get('input'))}"
        else:
            msg += f" (got {type_name(err.get('input'))})"
        field = _loc_path(tuple(err["loc"]), rename)
        more = f" (and {len(errors) - 1} more problem(s) in this row)" if len(errors) > 1 else ""
        prefix = f"{where}, field '{field}'" if field else where
        raise InputDataError(f"{prefix}: {msg}{more}") from None
