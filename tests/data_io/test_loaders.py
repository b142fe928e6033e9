"""Loaders for prompts, WritingBench and DeepResearchGym: real files load, files and frames are read as documented."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from r2_write.data_io import (
    DRGQuery,
    InputDataError,
    load_deepresearchgym,
    load_prompts,
    load_writingbench,
    queries_from_frame,
    validate_prompts,
    writingbench_frame,
)
from r2_write.rubrics.schema import BANDS, DOMAINS
from tests.data_io.rows import LOADERS, _drg, _prompt, _wb_row, _write

PROJECT = Path(__file__).resolve().parents[2]
RAW_PROMPTS = PROJECT / "data" / "01_raw" / "prompts.jsonl"


# --------------------------------------------------------------------------- real files


@pytest.mark.parametrize(
    ("name", "rows", "key"), [("format_subset.jsonl", 342, "criteria"), ("length_subset.jsonl", 222, "checklist")]
)
def test_writingbench_subsets_load(benchmarks_root, name, rows, key):
    path = benchmarks_root / "writingbench" / name
    queries = load_writingbench(path)
    assert len(queries) == rows
    assert {q.domain for q in queries} <= set(DOMAINS)
    assert all(len(q.criteria) == 5 for q in queries)
    assert all(tuple(c.bands) == BANDS for q in queries for c in q.criteria)
    assert len({q.id for q in queries}) == rows
    first = json.loads(path.open(encoding="utf-8").readline())
    assert key in first
    assert queries[0].id == str(first["index"])
    assert queries[0].criteria[0].name == first[key][0]["name"]
    assert len(load_writingbench(path, limit=7)) == 7


def test_writingbench_frame_round_trip_through_parquet(benchmarks_root, tmp_path):
    queries = load_writingbench(benchmarks_root / "writingbench" / "length_subset.jsonl", limit=20)
    frame = writingbench_frame(queries)
    assert list(frame.columns) == ["id", "domain", "subdomain", "query", "criteria"]
    frame.to_parquet(tmp_path / "q.parquet")
    assert queries_from_frame(pd.read_parquet(tmp_path / "q.parquet")) == queries


def test_deepresearchgym_loads(benchmarks_root):
    queries = load_deepresearchgym(benchmarks_root / "deepresearchgym" / "queries.jsonl")
    assert len(queries) == 60
    assert all(isinstance(q, DRGQuery) for q in queries)
    assert sum(len(q.key_points) for q in queries) == 1005
    assert min(len(q.key_points) for q in queries) == 3
    assert max(len(q.key_points) for q in queries) == 42
    assert len(load_deepresearchgym(benchmarks_root / "deepresearchgym" / "queries.jsonl", limit=5)) == 5


def test_raw_prompts_load():
    df = load_prompts(RAW_PROMPTS)
    assert list(df.columns) == ["id", "domain", "language", "prompt"]
    assert 55 <= len(df) <= 65
    per_domain = df["domain"].value_counts()
    assert set(per_domain.index) == set(DOMAINS)
    assert per_domain.between(8, 12).all()
    assert 8 <= (df["language"] == "zh").sum() <= 12
    assert df["id"].is_unique
    pd.testing.assert_frame_equal(validate_prompts(df), df)


# --------------------------------------------------------------------------- files


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_missing_file(tmp_path, loader):
    with pytest.raises(InputDataError, match=r"nope\.jsonl: file not found"):
        LOADERS[loader](tmp_path / "nope.jsonl")


def test_utf16_file_is_named(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(_prompt()) + "\n", encoding="utf-16")
    with pytest.raises(InputDataError, match="line 1: not valid UTF-8.*looks UTF-16"):
        load_prompts(path)


def test_blank_lines_bom_and_defaults(tmp_path):
    path = tmp_path / "p.jsonl"
    body = "\n\n".join(json.dumps(r, ensure_ascii=False) for r in (
        {"id": "a", "domain": "Education", "prompt": " 写一首诗。 "},
        {"id": 2, "domain": "Education", "language": "zh", "prompt": "x", "extra": [1]},
    ))
    path.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8") + b"\r\n\n   \n")
    df = load_prompts(path)
    assert df.to_dict("records") == [
        {"id": "a", "domain": "Education", "language": "en", "prompt": "写一首诗。"},
        {"id": "2", "domain": "Education", "language": "zh", "prompt": "x"},
    ]


def test_drg_skips_queries_without_key_points(tmp_path, caplog):
    path = _write(tmp_path, [_drg("1"), _drg("2", n=0), _drg("3")])
    with caplog.at_level(logging.WARNING, logger="r2_write.data_io"):
        queries = load_deepresearchgym(path)
    assert [q.id for q in queries] == ["1", "3"]
    assert "skipped 1 query with no key points: 2 (line 2)" in caplog.text


def test_writingbench_accepts_both_shapes(tmp_path):
    path = _write(tmp_path, [_wb_row(1), _wb_row(2, key="checklist")])
    a, b = load_writingbench(path)
    assert (a.id, b.id) == ("1", "2")
    assert a.criteria == b.criteria and a.domain == "Education" and a.subdomain == "Lesson Plans"


@pytest.mark.parametrize("limit", [-1, 1.5, "3"])
def test_bad_limit(tmp_path, limit):
    with pytest.raises(ValueError, match="limit must be"):
        load_writingbench(_write(tmp_path, [_wb_row()]), limit=limit)


# --------------------------------------------------------------------------- frames


def test_validate_prompts_frame():
    df = pd.DataFrame([_prompt("a"), _prompt("b", language=None)])
    assert validate_prompts(df)["language"].tolist() == ["en", "en"]
    no_lang = pd.DataFrame([{"id": "a", "domain": "Education", "prompt": "p"}])
    assert validate_prompts(no_lang)["language"].tolist() == ["en"]


def test_writingbench_files_frame_merges_shared_queries_and_tags_subsets(tmp_path):
    from r2_write.data_io import writingbench_files_frame

    full = _write(tmp_path, [_wb_row(1), _wb_row(2, query="Draft a memo.", domain2="Memos")], "benchmark_all.jsonl")
    style = _write(tmp_path, [_wb_row(2, key="checklist", query="Draft a memo.", domain2="Memos")], "style_subset.jsonl")
    other = _write(tmp_path, [_wb_row(1, query="A different query that reuses index 1.")], "length_subset.jsonl")
    out = writingbench_files_frame([full, style, other])
    assert list(out["id"]) == ["1", "2", "length:1"]  # identical query merged; a reused index made unique
    assert list(out["subsets"]) == ["benchmark_all", "benchmark_all,style", "length"]
    named = writingbench_files_frame({"all": full, "style": style})
    assert list(named["subsets"]) == ["all", "all,style"]
    with pytest.raises(InputDataError, match="subset name"):
        writingbench_files_frame({"a,b": full})
    with pytest.raises(InputDataError, match="no WritingBench file"):
        writingbench_files_frame({})


def test_writingbench_files_frame_reads_the_real_subsets(benchmarks_root):
    from r2_write.data_io import writingbench_files_frame

    out = writingbench_files_frame({"format": benchmarks_root / "writingbench" / "format_subset.jsonl",
                                    "length": benchmarks_root / "writingbench" / "length_subset.jsonl"})
    # the two files reuse indices for other queries and give their 58 shared queries other criteria
    assert len(out) == 342 + 222 and out["id"].is_unique
    assert out["subsets"].value_counts().to_dict() == {"format": 342, "length": 222}
    assert out["subdomain"].ne("").all()
