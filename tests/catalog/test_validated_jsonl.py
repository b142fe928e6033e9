"""ValidatedJSONLDataset: load/exists/describe round trips in tmp_path; read-only save."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from kedro.io import DatasetError

from r2_write.catalog.validated_jsonl import ValidatedJSONLDataset

ROWS = [
    {"id": "p1", "domain": "Education", "language": "en", "prompt": "Explain photosynthesis to ten-year-olds."},
    {"id": "p2", "domain": "Finance & Business", "prompt": "Draft a memo on Q3 costs."},
    {"id": "p3", "domain": "Literature & Arts", "language": "zh", "prompt": "写一首关于秋天的短诗。"},
]


@pytest.fixture
def filepath_jsonl(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in ROWS) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def dataset(filepath_jsonl) -> ValidatedJSONLDataset:
    return ValidatedJSONLDataset(filepath=str(filepath_jsonl), kind="prompts")


class TestValidatedJSONLDataset:
    def test_load(self, dataset):
        df = dataset.load()
        assert list(df.columns) == ["id", "domain", "language", "prompt"]
        assert df["id"].tolist() == ["p1", "p2", "p3"]
        assert df.loc[1, "language"] == "en"  # default
        assert df.loc[2, "prompt"] == ROWS[2]["prompt"]

    def test_exists(self, dataset, tmp_path):
        assert dataset.exists()
        assert not ValidatedJSONLDataset(filepath=str(tmp_path / "nope.jsonl"), kind="prompts").exists()

    def test_save_is_read_only(self, dataset, filepath_jsonl):
        before = filepath_jsonl.read_bytes()
        with pytest.raises(DatasetError, match="read-only"):
            dataset.save(pd.DataFrame(ROWS))
        assert filepath_jsonl.read_bytes() == before

    def test_bad_row_names_line_and_field(self, tmp_path):
        path = tmp_path / "bad.jsonl"
        path.write_text(json.dumps(ROWS[0]) + "\n" + json.dumps({**ROWS[1], "domain": "Cooking"}) + "\n")
        with pytest.raises(DatasetError, match=r"line 2, field 'domain'"):
            ValidatedJSONLDataset(filepath=str(path), kind="prompts").load()

    def test_missing_file(self, tmp_path):
        with pytest.raises(DatasetError, match="file not found"):
            ValidatedJSONLDataset(filepath=str(tmp_path / "nope.jsonl"), kind="prompts").load()

    @pytest.mark.parametrize("kind", ["writingbench", "deepresearchgym"])
    def test_missing_benchmark_file_names_the_real_setting(self, tmp_path, kind):
        with pytest.raises(DatasetError, match="file not found") as exc:
            ValidatedJSONLDataset(filepath=str(tmp_path / kind / "queries.jsonl"), kind=kind).load()
        message = str(exc.value)
        assert "https://github.com/X-PLUG/WritingBench" in message
        assert "benchmarks_root in conf/base/globals.yml" in message and "--params benchmarks_root=" in message
        assert "benchmarks.root" not in message

    def test_unknown_kind(self, filepath_jsonl):
        with pytest.raises(DatasetError, match="kind must be"):
            ValidatedJSONLDataset(filepath=str(filepath_jsonl), kind="csv")  # type: ignore[arg-type]

    def test_describe_and_preview(self, dataset, filepath_jsonl):
        desc = dataset._describe()
        assert desc["filepath"] == str(filepath_jsonl) and desc["kind"] == "prompts"
        assert str(filepath_jsonl) in repr(dataset)
        preview = dataset.preview(nrows=2)
        assert preview["columns"] == ["id", "domain", "language", "prompt"] and len(preview["data"]) == 2

    def test_load_args_are_copied(self, filepath_jsonl):
        args = {"limit": 1}
        ds = ValidatedJSONLDataset(filepath=str(filepath_jsonl), kind="writingbench", load_args=args)
        args["limit"] = 99
        assert ds._describe()["load_args"] == {"limit": 1}

    def test_project_raw_prompts(self, project_root):
        df = ValidatedJSONLDataset(filepath=str(project_root / "data/01_raw/prompts.jsonl"), kind="prompts").load()
        assert len(df) >= 6 and df["id"].is_unique
