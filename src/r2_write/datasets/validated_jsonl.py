"""``ValidatedJSONLDataset``: read-only JSON-lines input validated row by row."""

from __future__ import annotations

import json
from copy import deepcopy
from pathlib import PurePosixPath
from typing import Any, Literal

import pandas as pd
from kedro.io import AbstractDataset, DatasetError

from r2_write import data_io

Kind = Literal["prompts", "writingbench", "deepresearchgym"]


class ValidatedJSONLDataset(AbstractDataset[None, pd.DataFrame]):
    """Loads prompts, WritingBench or DeepResearchGym JSON-lines files into a DataFrame.

    Every row is validated on load; a bad row raises one error naming the file, the line
    and the field. The dataset is read-only (inputs are never rewritten by a run).

    Example catalog entry:

    .. code-block:: yaml

        writingbench_queries:
          type: r2_write.datasets.validated_jsonl.ValidatedJSONLDataset
          filepath: ${globals:benchmarks_root}/writingbench/format_subset.jsonl
          kind: writingbench
          load_args:
            limit: 20

    Example:

    >>> ds = ValidatedJSONLDataset(filepath="data/01_raw/prompts.jsonl", kind="prompts")
    >>> sorted(ds.load().columns)  # doctest: +SKIP
    ['domain', 'id', 'language', 'prompt']
    """

    DEFAULT_LOAD_ARGS: dict[str, Any] = {}

    def __init__(
        self,
        *,
        filepath: str,
        kind: Kind,
        load_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Create the dataset.

        Args:
            filepath: Path of the JSON-lines file.
            kind: ``prompts`` (id, domain, language, prompt), ``writingbench`` (index,
                domain1, domain2, query, criteria|checklist) or ``deepresearchgym``
                (id, query, key_points).
            load_args: ``limit`` (first N rows) for benchmark files.
            metadata: Free-form metadata (kedro-viz layer...).
        """
        if kind not in ("prompts", "writingbench", "deepresearchgym"):
            raise DatasetError(f"kind must be prompts, writingbench or deepresearchgym, got {kind!r}")
        self._filepath = PurePosixPath(filepath)
        self._kind = kind
        self._load_args = {**self.DEFAULT_LOAD_ARGS, **deepcopy(load_args or {})}
        self.metadata = metadata

    def load(self) -> pd.DataFrame:
        path = str(self._filepath)
        if self._kind == "prompts":
            return data_io.load_prompts(path)
        if self._kind == "writingbench":
            return data_io.writingbench_frame(data_io.load_writingbench(path, **self._load_args))
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
        from pathlib import Path

        return Path(self._filepath).exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "kind": self._kind, "load_args": self._load_args}

    def preview(self, nrows: int = 5):
        """First rows as a table for kedro-viz."""
        return self.load().head(nrows).to_dict(orient="split")
