"""The overlap check: normalised text hashes, disjoint sets, raw prompts vs. the benchmarks."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from r2_write.data_io import DataOverlapError, check_disjoint, load_deepresearchgym, load_prompts, load_writingbench, normalized_text_hash

RAW_PROMPTS = Path(__file__).resolve().parents[2] / "data" / "01_raw" / "prompts.jsonl"


# --------------------------------------------------------------------------- overlap


def test_normalized_text_hash():
    h = normalized_text_hash
    assert h("Write a Poem, please!") == h("  write a poem   please ")
    assert h("请写一首诗。") == h("请写一首诗")
    assert h("ＡＢＣ") == h("abc")
    assert h("write a poem") != h("write a poet")
    assert len(h("x")) == 40


def test_check_disjoint_passes_and_fails():
    check_disjoint({"a": ["one text", "two"], "b": ["three"], "c": {}})
    with pytest.raises(DataOverlapError) as exc:
        check_disjoint({
            "train": pd.Series(["Write a sonnet.", "Other"], index=["p1", "p2"]),
            "eval": {"17": "write a SONNET", "18": "new"},
            "extra": ["nothing shared", None],
        })
    message = str(exc.value)
    assert "sets 'train' and 'eval' share 1 text(s)" in message
    assert "'Write a sonnet.' (train id 'p1', eval id '17')" in message
    assert "'extra'" not in message


def test_raw_prompts_are_not_benchmark_queries(benchmarks_root):
    prompts = load_prompts(RAW_PROMPTS).set_index("id")["prompt"]
    wb = {
        q.id: q.query
        for name in ("format_subset.jsonl", "length_subset.jsonl")
        for q in load_writingbench(benchmarks_root / "writingbench" / name)
    }
    drg = {q.id: q.query for q in load_deepresearchgym(benchmarks_root / "deepresearchgym" / "queries.jsonl")}
    check_disjoint({"raw_prompts": prompts, "writingbench": wb, "deepresearchgym": drg})
