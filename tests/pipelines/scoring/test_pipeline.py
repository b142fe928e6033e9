"""Scoring pipeline: SFT/RL sets, disjointness against evaluation sets, summaries."""

from __future__ import annotations

import pandas as pd
from kedro.runner import SequentialRunner

from r2_write.pipelines.scoring import create_pipeline
from tests.pipelines.conftest import memory_catalog
from tests.pipelines.scoring.conftest import _criteria, _eval_sets, _trajectories


def test_scoring_pipeline(project_params, llm_params, fake_llm):
    crit = _criteria(project_params)
    wb, drg = _eval_sets()
    kept_rl = pd.DataFrame(
        {"id": ["r1"], "domain": ["Education"], "language": ["en"], "prompt": ["Plan a lesson."], "criteria": [crit],
         "mean_score": [5.0], "std_score": [1.0]}
    )
    dropped_rl = kept_rl.assign(id="r2", reason="too_easy")
    catalog = memory_catalog(
        {
            "synthesis.trajectories": _trajectories(crit),
            "filtering.kept": kept_rl,
            "filtering.dropped": dropped_rl,
            "writingbench_queries": wb,
            "deepresearchgym_queries": drg,
            "params:llm": llm_params,
            "params:judge": {**project_params["judge"], "mode": "generate"},
            "params:scoring": {"min_final_score": 5.0, "require_improvement": True},
            "params:ppo.reward": {"min_gain": 0.25},
        },
        keep=("scoring.sft_set", "scoring.rl_set", "scoring.summary", "scoring.disjointness"),
    )
    SequentialRunner().run(create_pipeline(), catalog)
    # the fake judge scores every criterion 6 -> all pass the threshold; p1 improved, p2 did not, p3 did
    assert list(catalog.load("scoring.sft_set")["id"]) == ["p1", "p3"]
    assert list(catalog.load("scoring.rl_set")["id"]) == ["r1"]
    summary = catalog.load("scoring.summary").set_index(["set", "reason"])["count"]
    assert summary[("sft", "kept")] == 2 and summary[("sft", "no_improvement")] == 1 and summary[("rl", "too_easy")] == 1
    assert catalog.load("scoring.disjointness")["disjoint"].all()
    metrics = catalog.load("scoring_metrics")
    assert metrics["datasets/sft_examples"]["value"] == 2.0 and metrics["datasets/rl_prompts"]["value"] == 1.0
    assert metrics["datasets/sft_steps_cut"]["value"] == 1.0  # p3's trailing step
    assert summary[("sft", "redundant_steps_cut")] == 1
    assert catalog.load("scoring_trim_metrics")["scoring/steps_cut"]["value"] == 2.0
