"""Evaluation pipeline run by SequentialRunner on an in-memory catalog."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from matplotlib.figure import Figure

from r2_write.data_io import load_deepresearchgym, load_writingbench, writingbench_frame
from r2_write.evaluation.compare import METRIC_COLUMNS
from r2_write.pipelines.evaluation import create_pipeline
from r2_write.pipelines.evaluation.pipeline import VARIANTS

PER_VARIANT = [
    "generate_writingbench_responses_node",
    "judge_writingbench_responses_node",
    "generate_drg_reports_node",
    "judge_drg_key_points_node",
    "judge_drg_quality_node",
    "judge_reflection_steps_node",
    "summarize_variant_node",
]


def test_pipeline_wiring():
    pipe = create_pipeline()
    names = {n.name for n in pipe.nodes}
    for v in VARIANTS:
        assert {f"evaluation.{v}.{n}" for n in PER_VARIANT} <= names
        assert f"evaluation.{v}.metrics" in pipe.outputs()
    assert {"compare_variants_node", "reflection_effects_node", "retrieve_drg_passages_node"} <= names
    assert {"base_model", "sft.model", "ppo.model", "ppo_outcome.model", "grpo.model"} <= pipe.inputs()
    assert {"writingbench_queries", "deepresearchgym_queries", "synthesis.steps"} <= pipe.inputs()
    compare = next(n for n in pipe.nodes if n.name == "compare_variants_node")
    assert compare.inputs[: len(VARIANTS)] == [f"evaluation.{v}.summary" for v in VARIANTS]
    assert [f"evaluation.{v}.writingbench_breakdown" for v in VARIANTS] == compare.inputs[len(VARIANTS) : 2 * len(VARIANTS)]
    assert compare.inputs[2 * len(VARIANTS) :] == ["evaluation.model_fingerprints", "ppo.history", "ppo_outcome.history"]
    assert all("evaluation" in n.tags for n in pipe.nodes)
    assert "evaluation_sft" in next(n for n in pipe.nodes if n.name.startswith("evaluation.sft.")).tags


def test_pipeline_variant_subsets():
    pipe = create_pipeline(variants=["base", "custom"])
    assert {"base_model", "custom.model"} <= pipe.inputs() and "sft.model" not in pipe.inputs()
    with pytest.raises(ValueError, match="at least one"):
        create_pipeline(variants=[])


class KeptMemoryDataset(MemoryDataset):
    """A MemoryDataset the runner cannot release: intermediate tables stay readable after the run."""

    def _release(self) -> None:
        pass


INSPECTED = ("writingbench_scores", "drg_keypoint_labels", "drg_quality")


def _catalog(wb, drg, steps, params, llm, judge, variants) -> DataCatalog:
    catalog = DataCatalog({f"evaluation.{v}.{name}": KeptMemoryDataset() for v in variants for name in INSPECTED})
    catalog["writingbench_queries"] = wb
    catalog["deepresearchgym_queries"] = drg
    catalog["synthesis.steps"] = steps
    for model_dataset in set(variants.values()):
        catalog[model_dataset] = llm["policy"]["model"]
    catalog["params:evaluation"] = params
    catalog["params:llm"] = llm
    catalog["params:judge"] = judge
    return catalog


def _check_outputs(catalog, variants):
    table = catalog.load("evaluation.comparison")
    assert list(table["variant"]) == list(variants)
    assert list(table.columns[1 : 1 + len(METRIC_COLUMNS)]) == METRIC_COLUMNS
    for col in ("writingbench_overall", "kpr", "kpc", "quality_overall", "response_tokens"):
        assert table[col].notna().all(), col
    assert table["writingbench_overall"].between(10, 100).all() and table["kpr"].between(0, 100).all()
    main_table = catalog.load("evaluation.comparison_markdown").split("\n## ")[0]
    assert main_table.count("\n| ") == len(variants) + 1  # header + rows
    plot = catalog.load("evaluation.comparison_plot")
    assert isinstance(plot, Figure)
    plotted = {c.get_label(): c.patches[0].get_height() for c in plot.axes[0].containers}  # writingbench_overall bars
    assert plotted == pytest.approx(dict(zip(table["variant"], table["writingbench_overall"])))
    for v in variants:
        metrics = catalog.load(f"evaluation.{v}.metrics")
        assert {f"eval/{v}/writingbench_overall", f"eval/{v}/kpr", f"eval/{v}/quality_clarity"} <= metrics.keys()
    effects = catalog.load("evaluation.reflection_effects")
    assert list(effects["domain"])[-1] == "All"
    assert list(effects["source"])[-len(variants) :] == list(variants)  # each variant's own steps beside synthesis
    for v in variants:  # logged wherever a step was scored (NaN, e.g. no reflection at all, is not logged)
        shares = table.set_index("variant").loc[v, "steps_raised_share"]
        assert (f"eval/{v}/steps_raised_share" in catalog.load(f"evaluation.{v}.metrics")) == (not math.isnan(shares))
    assert "## WritingBench by requirement subset" in catalog.load("evaluation.comparison_markdown") or "subsets" not in catalog.load("writingbench_queries")
    return table


def test_evaluation_pipeline_runs_with_fakes(eval_llm, wb_queries, drg_queries, steps, eval_params, llm_params):
    variants = {"base": "base_model", "sft": "sft.model"}
    catalog = _catalog(wb_queries, drg_queries, steps, eval_params, {**llm_params, "policy": {"model": "m"}},
                       {"mode": "generate"}, variants)
    SequentialRunner().run(create_pipeline(variants=variants), catalog)
    table = _check_outputs(catalog, variants)
    assert (table["writingbench_overall"] == 70.0).all()
    assert table["kpr"].tolist() == pytest.approx([200 / 3] * 2)  # 1 query, 3 points: the "second" one is omitted
    scores = catalog.load("evaluation.sft.writingbench_scores")
    assert len(scores) == 15 and set(scores["id"]) == {"1", "2", "900"}
    # every response is draft -> reflection -> revision and the fake judge gives 7 to all: one unchanged step each
    assert (table["steps_unchanged_share"] == 1.0).all() and (table["reflection_steps"] == 3).all()
    assert table["writingbench_subset_format"].tolist() == [70.0, 70.0]
    breakdown = catalog.load("evaluation.writingbench_breakdown")
    assert list(breakdown.columns[-2:]) == ["base", "sft"] and "Lesson Plans" in set(breakdown["group"])


@pytest.mark.slow
def test_evaluation_pipeline_embedded_model(embedded_model_dir, steps, tmp_path, benchmarks_root):
    """Two variants on the real embedded model: 1 WritingBench query (5 criteria), 1 DRG query (3 key points).

    Both variants point at the same checkpoint and share a response cache, so the second
    variant is served from the cache (as a re-run of an unchanged variant would be).
    """
    import torch

    torch.set_num_threads(2)
    root = benchmarks_root
    wb_all = writingbench_frame(load_writingbench(root / "writingbench" / "format_subset.jsonl", limit=20))
    wb = wb_all.loc[[wb_all["query"].str.len().idxmin()]].reset_index(drop=True)  # the shortest: CPU time
    drg_q = load_deepresearchgym(root / "deepresearchgym" / "queries.jsonl", limit=1)
    drg = pd.DataFrame([{"id": q.id, "query": q.query, "key_points": json.dumps([k.model_dump() for k in q.key_points])} for q in drg_q])
    role = {"backend": "transformers", "model": str(embedded_model_dir), "device": "cpu", "batch_size": 8,
            "cache_path": str(tmp_path / "llm_cache.sqlite")}
    llm = {"judge": role, "policy": role}
    params = {
        "generation": {"temperature": 0.7, "max_new_tokens": 24, "seed": 0},
        "writingbench": {"num_queries": 1},
        "deepresearchgym": {"num_queries": 1, "max_key_points": 3, "retriever": {"kind": "closed_book"}},
    }
    variants = {"base": "base_model", "sft": "base_model"}
    catalog = _catalog(wb, drg, steps, params, llm, {"mode": "probability"}, variants)
    SequentialRunner().run(create_pipeline(variants=variants), catalog)
    table = _check_outputs(catalog, variants)
    assert len(catalog.load("evaluation.base.writingbench_scores")) == 5
    labels = catalog.load("evaluation.base.drg_keypoint_labels")
    assert len(labels) == 3 and labels["label"].isin(["Supported", "Omitted", "Contradicted"]).all()
    quality = catalog.load("evaluation.sft.drg_quality")
    assert len(quality) == 6 and quality["rating"].between(0, 10).all()
    assert not math.isnan(table.loc[0, "quality_clarity"])
    pd.testing.assert_series_equal(table.iloc[0, 1:], table.iloc[1, 1:], check_names=False)  # cached: same numbers
