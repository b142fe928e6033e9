"""Load and validate the project's input files: raw prompts, WritingBench and DeepResearchGym.

Every loader checks every row and fails with one :class:`InputDataError` whose message names
the file, the 1-based line (or, for data frames, the 1-based row) and the field, for example::

    data/01_raw/prompts.jsonl line 7, field 'domain': unknown domain 'Sport'; expected one of ...
    format_subset.jsonl line 12, field 'criteria[2].9-10': must not be empty

Field paths use JSON-path style with 0-based list positions (``criteria[2]`` is the third
criterion). Blank lines are skipped; a UTF-8 byte-order mark on the first line is accepted.

The benchmark files are not part of this repository: users download them (see
:func:`resolve_benchmark_dir`) and point ``benchmarks_root`` in ``conf/base/globals.yml`` (or
``kedro run --params benchmarks_root=/path``) at them.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import logging
import math
import numbers
import os
import sys
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from itertools import combinations
from pathlib import Path
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

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_CHARS",
    "DRGQuery",
    "DataOverlapError",
    "InputDataError",
    "KeyPoint",
    "PromptRow",
    "check_disjoint",
    "load_deepresearchgym",
    "load_prompts",
    "load_writingbench",
    "normalized_text_hash",
    "project_root",
    "queries_from_frame",
    "resolve_benchmark_dir",
    "validate_prompts",
    "writingbench_files_frame",
    "writingbench_frame",
]

MAX_CHARS = 100_000
"""Default upper bound on the length of any one text field (characters)."""

LANGUAGES = ("en", "zh")
PROMPT_COLUMNS = ("id", "domain", "language", "prompt")
WRITINGBENCH_COLUMNS = ("id", "domain", "subdomain", "query", "criteria")
BENCHMARKS_ENV_VAR = "R2_BENCHMARKS_DIR"


class InputDataError(ValueError):
    """An input file or table is malformed; the message names the file, line/row and field."""


class DataOverlapError(ValueError):
    """Two data sets that must be disjoint share texts (after normalisation)."""


# --------------------------------------------------------------------------- field checks


def _type_name(v: Any) -> str:
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


def _short(v: str, n: int = 60) -> str:
    return repr(v if len(v) <= n else v[:n] + "...")


def _max_chars(info: ValidationInfo) -> int:
    ctx = info.context or {}
    return int(ctx.get("max_chars", MAX_CHARS))


def _check_str(v: Any, info: ValidationInfo, *, allow_empty: bool) -> str:
    if not isinstance(v, str):
        raise ValueError(f"expected a string, got {_type_name(v)}")
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
    raise ValueError(f"expected a string or integer id, got {_type_name(v)}")


def _domain(v: Any, info: ValidationInfo) -> str:
    v = _text(v, info)
    if v not in DOMAINS:
        raise ValueError(f"unknown domain {_short(v)}; expected one of {', '.join(map(repr, DOMAINS))}")
    return v


def _optional_domain(v: Any, info: ValidationInfo) -> str:
    v = _optional_text(v, info)
    return _domain(v, info) if v else v


def _language(v: Any, info: ValidationInfo) -> str:
    v = _text(v, info)
    if v not in LANGUAGES:
        raise ValueError(f"unknown language {_short(v)}; expected one of {', '.join(map(repr, LANGUAGES))}")
    return v


def _positive_int(v: Any, info: ValidationInfo) -> int:
    if not isinstance(v, numbers.Integral) or isinstance(v, bool):
        raise ValueError(f"expected a positive integer, got {_type_name(v)}")
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


class _WBCriterion(BaseModel):
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


class _WBRow(BaseModel):
    model_config = ConfigDict(extra="ignore")

    index: Identifier
    domain1: Domain
    domain2: OptionalText = ""
    query: Text
    criteria: Annotated[list[_WBCriterion], BeforeValidator(_non_empty_list)]


class _FrameQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: Identifier
    domain: OptionalDomain = ""
    subdomain: OptionalText = ""
    query: Text
    criteria: Annotated[list[_WBCriterion], BeforeValidator(_non_empty_list)]


# --------------------------------------------------------------------------- shared helpers

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


def _validate(
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
                msg += f", got {_type_name(err.get('input'))}"
        else:
            msg += f" (got {_type_name(err.get('input'))})"
        field = _loc_path(tuple(err["loc"]), rename)
        more = f" (and {len(errors) - 1} more problem(s) in this row)" if len(errors) > 1 else ""
        prefix = f"{where}, field '{field}'" if field else where
        raise InputDataError(f"{prefix}: {msg}{more}") from None


def _read_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSON-lines file."""
    p = Path(path)
    if not p.exists():
        raise InputDataError(f"{p}: file not found (resolved to {p.resolve()})")
    if p.is_dir():
        raise InputDataError(f"{p}: is a directory, expected a .jsonl file")
    try:
        fh = p.open("rb")
    except OSError as exc:
        raise InputDataError(f"{p}: cannot read file ({exc.strerror or exc})") from None
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                hint = ""
                if lineno == 1 and raw[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
                    hint = " (the file looks UTF-16 encoded)"
                raise InputDataError(
                    f"{p} line {lineno}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} "
                    f"of the line){hint}; re-save the file as UTF-8"
                ) from None
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputDataError(
                    f"{p} line {lineno}: invalid JSON ({exc.msg} at column {exc.colno}); "
                    "the line may be truncated or hold more than one record"
                ) from None
            except (ValueError, RecursionError) as exc:
                raise InputDataError(f"{p} line {lineno}: unreadable JSON ({exc})") from None
            if not isinstance(obj, dict):
                raise InputDataError(f"{p} line {lineno}: expected a JSON object, got {_type_name(obj)}")
            yield lineno, obj


def _check_duplicate(seen: dict[str, int], key: str, lineno: int, where: str, field: str, unit: str = "line"):
    if key in seen:
        raise InputDataError(
            f"{where}, field '{field}': duplicate id {_short(key)} (first seen on {unit} {seen[key]})"
        )
    seen[key] = lineno


def _no_rows(p: str | os.PathLike) -> InputDataError:
    return InputDataError(f"{p}: no data lines found (the file is empty or holds only blank lines)")


def _check_limit(limit: int | None) -> None:
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise ValueError(f"limit must be None or a non-negative integer, got {limit!r}")


def _is_missing(v: Any) -> bool:
    if v is None or v is pd.NA:
        return True
    return isinstance(v, float) and math.isnan(v)


def _frame_records(df: Any, source: str, required: Iterable[str], expected: Iterable[str]) -> list[dict]:
    if not isinstance(df, pd.DataFrame):
        raise InputDataError(f"{source}: expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise InputDataError(
            f"{source}: missing column(s) {missing}; expected columns {list(expected)} (got {list(df.columns)})"
        )
    return [{k: (None if _is_missing(v) else v) for k, v in rec.items()} for rec in df.to_dict("records")]


# --------------------------------------------------------------------------- prompts


def load_prompts(path: str | os.PathLike, *, max_chars: int = MAX_CHARS) -> pd.DataFrame:
    """Load and validate the raw prompts file (JSON lines).

    Each line is ``{"id": str, "domain": one of DOMAINS, "language": "en" | "zh", "prompt": str}``;
    ``language`` defaults to ``"en"``, other keys are ignored.

    Args:
        path: The ``.jsonl`` file.
        max_chars: Longest accepted text field, in characters.

    Returns:
        A frame with columns ``id, domain, language, prompt`` in file order.

    Raises:
        InputDataError: naming the file, line and field of the first bad row.
    """
    rows, seen = [], {}
    for lineno, obj in _read_jsonl(path):
        where = f"{path} line {lineno}"
        row = _validate(PromptRow, obj, where, max_chars)
        _check_duplicate(seen, row.id, lineno, where, "id")
        rows.append(row.model_dump())
    if not rows:
        raise _no_rows(path)
    return pd.DataFrame(rows, columns=list(PROMPT_COLUMNS))


def validate_prompts(df: pd.DataFrame, source: str = "prompts", *, max_chars: int = MAX_CHARS) -> pd.DataFrame:
    """Apply the :func:`load_prompts` checks to an already loaded frame.

    Rows are numbered from 1 in messages (``"prompts row 3, field 'prompt': must not be empty"``).
    A missing ``language`` column or value means ``"en"``.

    Args:
        df: Frame with columns ``id``, ``domain``, ``prompt`` and optionally ``language``.
        source: Name used in error messages (a catalog entry or file name).
        max_chars: Longest accepted text field, in characters.

    Returns:
        A clean frame with columns ``id, domain, language, prompt`` and a fresh index.
    """
    records = _frame_records(df, source, ("id", "domain", "prompt"), PROMPT_COLUMNS)
    rows, seen = [], {}
    for n, rec in enumerate(records, start=1):
        if rec.get("language") is None:
            rec.pop("language", None)
        where = f"{source} row {n}"
        row = _validate(PromptRow, rec, where, max_chars)
        _check_duplicate(seen, row.id, n, where, "id", unit="row")
        rows.append(row.model_dump())
    return pd.DataFrame(rows, columns=list(PROMPT_COLUMNS))


# --------------------------------------------------------------------------- WritingBench


def load_writingbench(
    path: str | os.PathLike, limit: int | None = None, *, max_chars: int = MAX_CHARS
) -> list[RubricQuery]:
    """Load WritingBench queries with their instance-specific criteria.

    Accepts both shapes of the public files: the criteria list under ``criteria`` or under
    ``checklist``. Fields ``index`` (becomes ``id``), ``domain1`` (one of DOMAINS), ``domain2``
    (subdomain, may be empty) and ``query`` (any language); each criterion needs ``name``,
    ``criteria_description`` and the bands ``"1-2"`` ... ``"9-10"``.

    Args:
        path: A WritingBench ``.jsonl`` file.
        limit: Return only the first ``limit`` queries (the rest of the file is not read).
        max_chars: Longest accepted text field, in characters.

    Returns:
        One :class:`RubricQuery` per line, in file order.

    Raises:
        InputDataError: e.g. ``"x.jsonl line 4, field 'checklist[2].9-10': must not be empty"``.
    """
    _check_limit(limit)
    if limit == 0:
        return []
    out: list[RubricQuery] = []
    seen: dict[str, int] = {}
    for lineno, obj in _read_jsonl(path):
        where = f"{path} line {lineno}"
        key = "criteria"
        if "checklist" in obj:
            if "criteria" in obj:
                raise InputDataError(
                    f"{where}, field 'checklist': both 'criteria' and 'checklist' are present; keep one"
                )
            key = "checklist"
            obj = {**obj, "criteria": obj["checklist"]}
        row = _validate(_WBRow, obj, where, max_chars, rename={"criteria": key})
        _check_duplicate(seen, row.index, lineno, where, "index")
        out.append(
            RubricQuery(
                id=row.index,
                query=row.query,
                domain=row.domain1,
                subdomain=row.domain2,
                criteria=[c.to_criterion() for c in row.criteria],
            )
        )
        if limit is not None and len(out) >= limit:
            break
    if not out:
        raise _no_rows(path)
    return out


def writingbench_frame(queries: list[RubricQuery]) -> pd.DataFrame:
    """Flatten rubric queries into a table (``criteria`` as a WritingBench-format JSON string).

    Args:
        queries: Queries as returned by :func:`load_writingbench`.

    Returns:
        A frame with columns ``id, domain, subdomain, query, criteria``.
    """
    rows = [
        {
            "id": q.id,
            "domain": q.domain,
            "subdomain": q.subdomain,
            "query": q.query,
            "criteria": json.dumps([c.to_row() for c in q.criteria], ensure_ascii=False),
        }
        for q in queries
    ]
    return pd.DataFrame(rows, columns=list(WRITINGBENCH_COLUMNS))


def subset_name(path: str | os.PathLike) -> str:
    """The requirement-subset name of a WritingBench file: its stem without ``_subset``.

    >>> subset_name("benchmark_query/requirement/format/format_subset.jsonl"), subset_name("benchmark_all.jsonl")
    ('format', 'benchmark_all')
    """
    stem = Path(path).stem
    return stem[: -len("_subset")] if stem.endswith("_subset") and len(stem) > len("_subset") else stem


def writingbench_files_frame(
    files: Mapping[str, str | os.PathLike] | Iterable[str | os.PathLike],
    limit: int | None = None,
    *,
    max_chars: int = MAX_CHARS,
) -> pd.DataFrame:
    """Load any number of WritingBench files into one table that remembers where each query came from.

    The official release holds the full set (``benchmark_all.jsonl``) and requirement subsets
    (``requirement/<style|format|length>/<name>_subset.jsonl``) that repeat some of its
    queries. A query found in several files with the same index, text and criteria is one
    row, tagged with every file (subset) holding it, so it is judged once and counts in each
    subset's score. Rows that differ (other files reuse indices for other queries, or give the
    same query other criteria) stay separate rows; when such a row's index is already taken,
    its ``id`` becomes ``<subset>:<index>``.

    Args:
        files: ``{subset name: path}``, or paths (named by :func:`subset_name`), in order.
        limit: Read only the first ``limit`` queries of each file.
        max_chars: Longest accepted text field, in characters.

    Returns:
        Columns ``id, domain, subdomain, query, criteria, subsets`` (the subset names of the
        row, comma-separated, in file order).
    """
    named = dict(files) if isinstance(files, Mapping) else {subset_name(p): p for p in files}
    if not named:
        raise InputDataError("no WritingBench file configured")
    for name in named:
        if not name or "," in str(name):
            raise InputDataError(f"WritingBench subset name {name!r}: must be non-empty and hold no comma")
    rows: list[dict] = []
    by_content: dict[tuple, int] = {}
    taken: set[str] = set()
    for name, path in named.items():
        frame = writingbench_frame(load_writingbench(path, limit, max_chars=max_chars))
        for rec in frame.to_dict("records"):
            key = (rec["id"], rec["query"], rec["criteria"])
            if key in by_content:
                row = rows[by_content[key]]
                if name not in row["subsets"]:
                    row["subsets"].append(name)
                continue
            rid = rec["id"] if rec["id"] not in taken else f"{name}:{rec['id']}"
            if rid in taken:
                raise InputDataError(f"{path}: query id {rid!r} is used twice across the WritingBench files")
            taken.add(rid)
            by_content[key] = len(rows)
            rows.append({**rec, "id": rid, "subsets": [name]})
    out = pd.DataFrame(rows, columns=[*WRITINGBENCH_COLUMNS, "subsets"])
    out["subsets"] = [",".join(v) for v in out["subsets"]]
    return out


def queries_from_frame(
    df: pd.DataFrame, source: str = "rubric_queries", *, max_chars: int = MAX_CHARS
) -> list[RubricQuery]:
    """Inverse of :func:`writingbench_frame`, validating every row (numbered from 1).

    Args:
        df: Frame with columns ``id``, ``query``, ``criteria`` (JSON string or list of dicts) and
            optionally ``domain`` and ``subdomain``.
        source: Name used in error messages.
        max_chars: Longest accepted text field, in characters.

    Returns:
        The rubric queries, in row order.
    """
    records = _frame_records(df, source, ("id", "query", "criteria"), WRITINGBENCH_COLUMNS)
    out: list[RubricQuery] = []
    seen: dict[str, int] = {}
    for n, rec in enumerate(records, start=1):
        where = f"{source} row {n}"
        crit = rec.get("criteria")
        if isinstance(crit, str):
            try:
                rec["criteria"] = json.loads(crit)
            except (ValueError, RecursionError) as exc:
                raise InputDataError(f"{where}, field 'criteria': invalid JSON ({exc})") from None
        elif crit is not None and not isinstance(crit, (list, dict)) and hasattr(crit, "tolist"):
            rec["criteria"] = crit.tolist()  # numpy arrays from parquet
        row = _validate(_FrameQuery, rec, where, max_chars)
        _check_duplicate(seen, row.id, n, where, "id", unit="row")
        out.append(
            RubricQuery(
                id=row.id,
                query=row.query,
                domain=row.domain,
                subdomain=row.subdomain,
                criteria=[c.to_criterion() for c in row.criteria],
            )
        )
    return out


# --------------------------------------------------------------------------- DeepResearchGym


def load_deepresearchgym(
    path: str | os.PathLike, limit: int | None = None, *, max_chars: int = MAX_CHARS
) -> list[DRGQuery]:
    """Load DeepResearchGym queries with their ground-truth key points.

    Each line is ``{"id", "query", "key_points": [{"point_number": int, "point_content": str}]}``.
    Queries whose ``key_points`` list is empty are skipped with one logged warning (the official
    scorer cannot rate them); a missing ``key_points`` field is an error.

    Args:
        path: The ``queries.jsonl`` file.
        limit: Return only the first ``limit`` queries that have key points.
        max_chars: Longest accepted text field, in characters.

    Returns:
        The queries, in file order.
    """
    _check_limit(limit)
    if limit == 0:
        return []
    out: list[DRGQuery] = []
    seen: dict[str, int] = {}
    skipped: list[str] = []
    for lineno, obj in _read_jsonl(path):
        where = f"{path} line {lineno}"
        q = _validate(DRGQuery, obj, where, max_chars)
        _check_duplicate(seen, q.id, lineno, where, "id")
        if not q.key_points:
            skipped.append(f"{q.id} (line {lineno})")
            continue
        out.append(q)
        if limit is not None and len(out) >= limit:
            break
    if skipped:
        logger.warning(
            "%s: skipped %d quer%s with no key points: %s%s",
            path,
            len(skipped),
            "y" if len(skipped) == 1 else "ies",
            ", ".join(skipped[:10]),
            " ..." if len(skipped) > 10 else "",
        )
    if not out:
        if skipped:
            raise InputDataError(f"{path}: no query has key points (all {len(skipped)} data lines skipped)")
        raise _no_rows(path)
    return out


# --------------------------------------------------------------------------- locations


def project_root() -> Path | None:
    """The nearest directory holding ``pyproject.toml``, searched from this file, then the cwd."""
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for d in (start, *start.parents):
            if (d / "pyproject.toml").is_file():
                return d
    return None


def _download_hint(where: str) -> str:
    return (
        f"download WritingBench from https://github.com/X-PLUG/WritingBench (benchmark_query/) into "
        f"{where}/writingbench/ and the DeepResearchGym queries and key points from "
        f"https://github.com/cxcscmu/deepresearch_benchmarking into {where}/deepresearchgym/, "
        f"and set benchmarks_root in conf/base/globals.yml or run with --params benchmarks_root={where} "
        f"(tests and benchmarks also read the {BENCHMARKS_ENV_VAR} environment variable)"
    )


def resolve_benchmark_dir(configured: str | os.PathLike | None = None) -> Path:
    """Find the directory that holds the downloaded benchmarks.

    Order: ``configured`` (relative paths are tried against the cwd, then the project root);
    else the ``R2_BENCHMARKS_DIR`` environment variable; else ``../shared/benchmarks`` beside the
    project root (the directory containing ``pyproject.toml``) when it exists.

    Args:
        configured: ``benchmarks_root`` (``conf/base/globals.yml``), or None/empty for the defaults.

    Returns:
        The absolute benchmark directory.

    Raises:
        InputDataError: the directory is missing; the message says how to get the data.
    """
    root = project_root()
    if configured is not None and str(configured).strip():
        p = Path(str(configured).strip()).expanduser()
        candidates = [p] if p.is_absolute() else [Path.cwd() / p] + ([root / p] if root else [])
        for c in candidates:
            if c.is_dir():
                return c.resolve()
        raise InputDataError(f"benchmark directory {p} not found; {_download_hint(str(p))}")
    env = os.environ.get(BENCHMARKS_ENV_VAR, "").strip()
    if env:
        p = Path(env).expanduser()
        if p.is_dir():
            return p.resolve()
        raise InputDataError(
            f"benchmark directory {p} (from ${BENCHMARKS_ENV_VAR}) not found; {_download_hint(str(p))}"
        )
    if root is not None:
        default = root.parent / "shared" / "benchmarks"
        if default.is_dir():
            return default.resolve()
    raise InputDataError(f"no benchmark directory configured or found; {_download_hint('<dir>')}")


# --------------------------------------------------------------------------- overlap checks


@cache
def _punctuation_table() -> dict[int, str]:
    return {cp: " " for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp)).startswith("P")}


def normalized_text_hash(text: str) -> str:
    """SHA-1 of ``text`` after NFKC, lower-casing, dropping punctuation and collapsing whitespace.

    >>> normalized_text_hash("Hello,  World!") == normalized_text_hash("hello world")
    True
    """
    t = unicodedata.normalize("NFKC", text).casefold().translate(_punctuation_table())
    t = " ".join(t.split())
    return hashlib.sha1(t.encode("utf-8", "surrogatepass")).hexdigest()


def check_disjoint(named_sets: Mapping[str, Iterable[str] | Mapping[Any, str]], max_examples: int = 3) -> None:
    """Raise :class:`DataOverlapError` if any two named sets share a text (after normalisation).

    Each value is an iterable of texts or a mapping ``id -> text`` (a dict or a pandas Series
    indexed by id), in which case the message names ids. ``None``/NaN texts are ignored.

    Args:
        named_sets: e.g. ``{"train_prompts": df.set_index("id")["prompt"], "writingbench": texts}``.
        max_examples: How many shared texts to quote per overlapping pair.

    Raises:
        DataOverlapError: naming every overlapping pair of sets and a few examples.
    """
    index: dict[str, dict[str, tuple[Any, str]]] = {}
    for name, items in named_sets.items():
        pairs = items.items() if hasattr(items, "items") else ((None, t) for t in items)
        table: dict[str, tuple[Any, str]] = {}
        for key, text in pairs:
            if _is_missing(text):
                continue
            if not isinstance(text, str):
                raise TypeError(f"check_disjoint: set {name!r} holds a {type(text).__name__}, expected str")
            table.setdefault(normalized_text_hash(text), (key, text))
        index[name] = table
    problems = []
    for a, b in combinations(index, 2):
        common = sorted(index[a].keys() & index[b].keys(), key=lambda h: str(index[a][h][0]) + index[a][h][1])
        if not common:
            continue
        examples = []
        for h in common[:max_examples]:
            (ka, text), (kb, _) = index[a][h], index[b][h]
            ids = ", ".join(f"{n} id {k!r}" for n, k in ((a, ka), (b, kb)) if k is not None)
            examples.append(f"{_short(text)} ({ids})" if ids else _short(text))
        problems.append(
            f"sets {a!r} and {b!r} share {len(common)} text(s), e.g. " + "; ".join(examples)
        )
    if problems:
        raise DataOverlapError(
            "data sets overlap (texts equal after lower-casing and removing punctuation and extra "
            "whitespace): " + " | ".join(problems)
        )
