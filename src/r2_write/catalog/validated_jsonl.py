"""``ValidatedJSONLDataset``: read-only JSON-lines input validated row by row."""

from __future__ import annotations

import json
from copy import deepcopy
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import pandas as pd
from kedro.io import AbstractDataset, DatasetError

from r2_write import data_io

Kind = Literal["prompts", "writingbench", "deepresearchgym"]

DOWNLOAD_HINT = (
    "the benchmark files are not part of this repository: download WritingBench from "
    "https://github.com/X-PLUG/WritingBench (benchmark_query/) into <benchmarks_root>/writingbench/ and the "
    "DeepResearchGym queries and key points from https://github.com/cxcscmu/deepresearch_benchmarking into "
    "<benchmarks_root>/deepresearchgym/; set benchmarks_root in conf/base/globals.yml, or per run with "
    "kedro run --params benchmarks_root=/path"
)
"""What a missing benchmark file's message adds (the catalog reads them under ``benchmarks_root``)."""


class ValidatedJSONLDataset(AbstractDataset[None, pd.DataFrame]):
    """Loads prompts, WritingBench or DeepResearchGym JSON-lines files into a DataFrame.

    Every row is validated on load; a bad row raises one error naming the file, the line
    and the field. The dataset is read-only (inputs are never rewritten by a run).

    Example catalog entry:

    .. code-block:: yaml

        writingbench_queries:
          type: r2_write.catalog.validated_jsonl.ValidatedJSONLDataset
          filepath: ${globals:benchmarks_root}/writingbench/format_subset.jsonl
          kind: writingbench
          load_args:
            limit: 20

    A ``writingbench`` dataset may read several files at once (``filepaths``: subset name ->
    path), e.g. the full set and its requirement subsets; the table then has a ``subsets``
    column naming the files that hold each query
    (:func:`r2_write.data_io.writingbench_files_frame`):

    .. code-block:: yaml

        writingbench_queries:
          type: r2_write.catalog.validated_jsonl.ValidatedJSONLDataset
          kind: writingbench
          filepaths:
            all: /data/WritingBench/benchmark_query/benchmark_all.jsonl
            style: /data/WritingBench/benchmark_query/requirement/style/style_subset.jsonl

    Example:

    >>> ds = ValidatedJSONLDataset(filepath="data/01_raw/prompts.jsonl", kind="prompts")
    >>> sorted(ds.load().columns)  # doctest: +SKIP
    ['domain', 'id', 'language', 'prompt']
    """

    DEFAULT_LOAD_ARGS: dict[str, Any] = {}

    def __init__(
        self,
        *,
        filepath: str | None = None,
        filepaths: dict[str, str] | None = None,
        kind: Kind,
        load_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Create the dataset.

        Args:
            filepath: Path of the JSON-lines file.
            filepaths: ``writingbench`` only, instead of ``filepath``: subset name -> path of
                each WritingBench file to read into one table (a ``subsets`` column says
                which files hold each query).
            kind: ``prompts`` (id, domain, language, prompt), ``writingbench`` (index,
                domain1, domain2, query, criteria|checklist) or ``deepresearchgym``
                (id, query, key_points).
            load_args: ``limit`` (first N rows) for benchmark files.
            metadata: Free-form metadata (kedro-viz layer...).
        """
        if kind not in ("prompts", "writingbench", "deepresearchgym"):
            raise DatasetError(f"kind must be prompts, writingbench or deepresearchgym, got {kind!r}")
        if (filepath is None) == (filepaths is None):
            raise DatasetError("give exactly one of filepath and filepaths")
        if filepaths is not None and (kind != "writingbench" or not filepaths or not isinstance(filepaths, dict)):
            raise DatasetError("filepaths (a non-empty mapping subset name -> path) is for kind writingbench only")
        self._filepaths = {str(k): PurePosixPath(v) for k, v in (filepaths or {}).items()}
        self._filepath = PurePosixPath(filepath) if filepath is not None else next(iter(self._filepaths.values()))
        self._kind = kind
        self._load_args = {**self.DEFAULT_LOAD_ARGS, **deepcopy(load_args or {})}
        self.metadata = metadata

    def load(self) -> pd.DataFrame:
        path = str(self._filepath)
        if self._kind != "prompts":
            for p in self._filepaths.values() or [self._filepath]:
                if not Path(p).exists():
                    raise data_io.InputDataError(f"{p}: file not found (resolved to {Path(p).resolve()}); {DOWNLOAD_HINT}")
        if self._kind == "prompts":
            return data_io.load_prompts(path)
        if self._kind == "writingbench":
            files = {k: str(v) for k, v in self._filepaths.items()} or [path]
            return data_io.writingbench_files_frame(files, **self._load_args)
        queries = data_io.load_deepresearchgym(path, **self._load_args)
        return pd.DataFrame(
            [
                {"id": q.id, "query": q.query, "key_points": json.dumps([k.model_dump() for k in q.key_points], ensure_ascii=False)}
                for q in queries
            ],
            columns=["id", "query", "key_points"],
        )

    def save(self, data: pd.DataFrame) -> None:
        raise DatasetError(f"{type(self).__name__} is read-only: inputs are never overwritten")

    def _exists(self) -> bool:
        return all(Path(p).exists() for p in (self._filepaths.values() or [self._filepath]))

    def _describe(self) -> dict[str, Any]:
        if self._filepaths:
            return {"filepaths": {k: str(v) for k, v in self._filepaths.items()}, "kind": self._kind, "load_args": self._load_args}
        return {"filepath": str(self._filepath), "kind": self._kind, "load_args": self._load_args}

    def preview(self, nrows: int = 5):
        """First rows as a table for kedro-viz."""
        return self.load().head(nrows).to_dict(orient="split")
