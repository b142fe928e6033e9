"""Filtering nodes: the rl pool with rubrics, judged samples (never 0 when unscored), the keep rule, the histogram."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from r2_write.config import ConfigError
from r2_write.pipelines.filtering.nodes import (
    filter_by_difficulty,
    plot_difficulty_histogram,
    score_policy_samples,
    select_rl_prompts,
)
from tests.fakes import role_of, user_text


def test_select_rl_prompts_takes_the_rl_pool_with_rubrics(dummy_prompts, project_params):
    prompts = dummy_prompts.assign(pool=["rl", "sft", "rl"])
    rubrics = pd.DataFrame({"id": ["p3"], "criteria": ['[{"name": "own"}]']})
    out = select_rl_prompts(prompts, rubrics, {}, project_params["generic_rubric"])
    assert list(out["id"]) == ["p1", "p3"]
    assert list(out["rubric_source"]) == ["generic", "instance"] and out.loc[1, "criteria"] == '[{"name": "own"}]'
    assert len(json.loads(out.loc[0, "criteria"])) == len(project_params["generic_rubric"])
    assert list(select_rl_prompts(prompts, rubrics, {"num_prompts": 1}, project_params["generic_rubric"])["id"]) == ["p1"]
    with pytest.raises(ConfigError, match="filtering.k"):
        select_rl_prompts(prompts, rubrics, {"k": 1}, project_params["generic_rubric"])


def _candidates(dummy_prompts, project_params) -> pd.DataFrame:
    return select_rl_prompts(dummy_prompts.assign(pool="rl"), pd.DataFrame(columns=["id", "criteria"]), {},
                             project_params["generic_rubric"])


def test_score_policy_samples_leaves_failed_and_unscored_samples_nan(dummy_prompts, project_params, llm_params, fake_llm):
    def respond(conv, sampling):
        assert role_of(conv) == "judge"
        return "no score here" if "[unscorable]" in user_text(conv) else '{"score": 7, "reason": "r"}'

    fake_llm.backend.respond = respond
    fake_llm.cfg = fake_llm.cfg.model_copy(update={"max_failed_share": 1.0})  # half the criteria fail on purpose
    samples = pd.DataFrame({"id": ["p1", "p1", "p2"], "sample": [0, 1, 0],
                            "answer": ["fine answer", "x", "[unscorable]"], "error": [None, "boom", None]})
    judge = {**project_params["judge"], "mode": "generate", "max_attempts": 1}
    scored, metrics = score_policy_samples(samples, _candidates(dummy_prompts, project_params), llm_params, judge)
    assert scored.loc[0, "score"] == 7.0
    assert math.isnan(scored.loc[1, "score"]) and math.isnan(scored.loc[2, "score"])  # never 0
    assert metrics["filtering/failed_samples"]["value"] == 1.0
    assert metrics["filtering/judge/failed_items"]["value"] > 0


def test_filter_by_difficulty_keeps_the_band_and_names_reasons(dummy_prompts, project_params):
    candidates = _candidates(dummy_prompts, project_params)
    scored = pd.DataFrame({"id": ["p1"] * 3 + ["p2"] * 3 + ["p3"] * 3, "sample": [0, 1, 2] * 3,
                           "score": [4.0, 5.0, 6.0, 9.0, 9.0, 9.5, 5.0, math.nan, math.nan]})
    kept, dropped, metrics = filter_by_difficulty(scored, candidates, {"rule": {"low": 3, "high": 8, "min_spread": 0.3}})
    assert list(kept["id"]) == ["p1"] and kept.loc[0, "mean_score"] == 5.0
    assert dropped.set_index("id")["reason"].to_dict() == {"p2": "too_easy", "p3": "unscored"}
    assert {"criteria", "rubric_source", "n_scored", "std_score"} <= set(kept.columns)
    assert metrics["filtering/kept"]["value"] == 1.0 and metrics["filtering/dropped"]["value"] == 2.0
    assert metrics["filtering/reason_unscored"]["value"] == 1.0

    fig = plot_difficulty_histogram(kept, dropped, {"rule": {"low": 3, "high": 8}})
    ax = fig.axes[0]
    assert sorted(line.get_xdata()[0] for line in ax.get_lines()) == [3, 8]  # the keep band
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["kept", "dropped"]
    kept_bars, dropped_bars = ax.containers  # stacked: one bar per 0.5-point bin and group
    assert [(p.get_x(), p.get_height()) for p in kept_bars if p.get_height()] == [(5.0, 1.0)]  # p1: mean 5.0
    dropped_means = {r.id: r.mean_score for r in dropped.itertuples()}  # p3: one score (5.0) of 3, dropped as unscored
    assert dropped_means == {"p2": pytest.approx(9.5 - 1 / 3), "p3": 5.0}
    assert [(p.get_x(), p.get_height()) for p in dropped_bars if p.get_height()] == [(5.0, 1.0), (9.0, 1.0)]
