"""Loaders of the project's input files: raw prompts, WritingBench and DeepResearchGym.

Every loader checks every row against its schema (:mod:`r2_write.data_io.schemas`) and fails
with one :class:`~r2_write.data_io.schemas.InputDataError` whose message names the file, the
1-based line (or, for data frames, the 1-based row) and the field. Blank lines are skipped; a
UTF-8 byte-order mark on the first line is accepted.

The benchmark files are not part of this repository: users download them and point
``benchmarks_root`` in ``conf/base/globals.yml`` (or ``kedro run --params
benchmarks_root=/path``) at them.
"""

from __future__ import annotations

import codecs
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from r2_write.data_io.schemas import (
    MAX_CHARS,
    DRGQuery,
    InputDataError,
    PromptRow,
    RubricQueryRow,
    WritingBenchRow,
    is_missing,
    short_text,
    type_name,
    validate_row,
)
from r2_write.rubrics.schema import RubricQuery

logger = logging.getLogger(__name__)

PROMPT_COLUMNS = ("id", "domain", "language", "prompt")
WRITINGBENCH_COLUMNS = ("id", "domain", "subdomain", "query", "criteria")


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
                raise InputDataError(f"{p} line {lineno}: expected a JSON object, got {type_name(obj)}")
            yield lineno, obj


def _check_duplicate(seen: dict[str, int], key: str, lineno: int, where: str, field: str, unit: str = "line"):
    if key in seen:
        raise InputDataError(
            f"{where}, field '{field}': duplicate id {short_text(key)} (first seen on {unit} {seen[key]})"
        )
    seen[key] = lineno


def _no_rows(p: str | os.PathLike) -> InputDataError:
    return InputDataError(f"{p}: no data lines found (the file is empty or holds only blank lines)")


def _check_limit(limit: int | None) -> None:
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise ValueError(f"limit must be None or a non-negative integer, got {limit!r}")


def _frame_records(df: Any, source: str, required: Iterable[str], expected: Iterable[str]) -> list[dict]:
    if not isinstance(df, pd.DataFrame):
        raise InputDataError(f"{source}: expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise InputDataError(
            f"{source}: missing column(s) {missing}; expected columns {list(expected)} (got {list(df.columns)})"
        )
    return [{k: (None if is_missing(v) else v) for k, v in rec.items()} for rec in df.to_dict("records")]


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
        row = validate_row(PromptRow, obj, where, max_chars)
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
        row = validate_row(PromptRow, rec, where, max_chars)
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
        row = validate_row(WritingBenchRow, obj, where, max_chars, rename={"criteria": key})
        _check_duplicate(seen, row.index, lineno, where, "index")
        out.append(row.to_query())
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
        row = validate_row(RubricQueryRow, rec, where, max_chars)
        _check_duplicate(seen, row.id, n, where, "id", unit="row")
        out.append(row.to_query())
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
        q = validate_row(DRGQuery, obj, where, max_chars)
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
