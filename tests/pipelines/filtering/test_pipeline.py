"""Filtering pipeline run by SequentialRunner on an in-memory catalog with a scripted judge."""

from __future__ import annotations

from collections import Counter

import pandas as pd
from kedro.runner import SequentialRunner

from r2_write.pipelines.filtering import create_pipeline
from tests.fakes import default_respond, role_of, user_text
from tests.pipelines.conftest import memory_catalog


def spread_respond_factory():
    """The j-th policy answer to a prompt is "answer-j"; the judge scores p1's answers 4, 5, 6 and p2's 9."""
    calls: Counter = Counter()

    def respond(conv, sampling):
        role, text = role_of(conv), user_text(conv)
        if role == "judge":
            if "tides" in text:
                return '{"score": %d, "reason": "r"}' % (4 + int(text.split("answer-")[1][0]))
            return '{"score": 9, "reason": "too easy"}'
        if role == "other":  # the policy answering a raw prompt
            calls[text] += 1
            return f"answer-{calls[text] - 1}"
        return default_respond(conv, sampling)

    return respond


def test_filtering_pipeline_keeps_and_drops_with_reasons(dummy_prompts, llm_params, project_params, fake_llm):
    fake_llm.backend.respond = spread_respond_factory()
    catalog = memory_catalog(
        {
            "prompts": dummy_prompts.assign(pool=["rl", "rl", "sft"]),
            "rubrics.accepted": pd.DataFrame(columns=["id", "domain", "criteria", "attempts"]),
            "base_model": "unused-by-fake",
            "params:filtering": {"k": 3, "max_new_tokens": 8, "rule": {"low": 3, "high": 8, "min_spread": 0.3}},
            "params:generic_rubric": project_params["generic_rubric"],
            "params:llm": llm_params,
            "params:judge": {**project_params["judge"], "mode": "generate"},
        },
        keep=("filtering.kept", "filtering.dropped", "filtering.scored_samples"),
    )
    SequentialRunner().run(create_pipeline(), catalog)
    kept, dropped = catalog.load("filtering.kept"), catalog.load("filtering.dropped")
    assert list(kept["id"]) == ["p1"] and list(dropped["id"]) == ["p2"]
    assert dropped.loc[0, "reason"] == "too_easy"
    assert kept.loc[0, "mean_score"] == 5.0  # samples 0,1,2 -> scores 4,5,6
    samples = catalog.load("filtering.scored_samples")
    assert len(samples) == 6 and samples["score"].notna().all()  # only the rl pool is sampled
    metrics = catalog.load("filtering_metrics")
    assert metrics["filtering/kept"]["value"] == 1.0
    assert metrics["filtering/reason_too_easy"]["value"] == 1.0
    fig = catalog.load("filtering_histogram")
    assert fig.axes[0].get_xlabel().startswith("mean judge score")
    kept_bars = fig.axes[0].containers[0]
    assert [(p.get_x(), p.get_height()) for p in kept_bars if p.get_height()] == [(5.0, 1.0)]  # the kept p1, mean 5.0
