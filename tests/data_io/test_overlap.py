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
    assert check_disjoint({"a": ["one text", "two"], "b": ["three"], "c": {}}) is None
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
    assert len(prompts) == 60 and len(wb) > 0 and len(drg) == 60  # the three sets were read, not empty
    assert check_disjoint({"raw_prompts": prompts, "writingbench": wb, "deepresearchgym": drg}) is None
    hashes = [{normalized_text_hash(t) for t in texts} for texts in (prompts.tolist(), wb.values(), drg.values())]
    assert not (hashes[0] & hashes[1]) and not (hashes[0] & hashes[2]) and not (hashes[1] & hashes[2])
    # the check does see a benchmark query copied into the prompts (so passing above means something)
    with pytest.raises(DataOverlapError, match="sets 'raw_prompts' and 'deepresearchgym' share 1 text"):
        check_disjoint({"raw_prompts": pd.concat([prompts, pd.Series([next(iter(drg.values()))], index=["copied"])]),
                        "writingbench": wb, "deepresearchgym": drg})


def test_sets_that_are_not_neighbours_are_compared_too():
    """a and c share a text, b shares nothing: every pair is checked, not only consecutive sets."""
    sets = {"a": {"a1": "A poem about rain."}, "b": {"b1": "A letter to a bank."}, "c": {"c1": "a POEM about rain"}}
    with pytest.raises(DataOverlapError) as exc:
        check_disjoint(sets)
    message = str(exc.value)
    assert "sets 'a' and 'c' share 1 text(s)" in message and "a id 'a1', c id 'c1'" in message
    assert "'b'" not in message
    assert check_disjoint({"a": sets["a"], "b": sets["b"]}) is None and check_disjoint({"b": sets["b"], "c": sets["c"]}) is None
