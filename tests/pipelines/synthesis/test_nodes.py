"""Synthesis nodes on 3-row fixtures (fake writer and judge)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from r2_write.config import ConfigError
from r2_write.llm.base import Generation
from r2_write.pipelines.synthesis.nodes import (
    extract_reflection_steps,
    select_synthesis_prompts,
    summarize_reflection_effects,
    synthesize_trajectories,
)
from r2_write.rubrics.schema import BANDS
from r2_write.trajectory import parse
from tests.fakes import role_of, user_text
from tests.pipelines.conftest import improving_respond

LOOP = {"max_rounds": 2, "plan_tokens": 8, "draft_tokens": 16, "reflection_tokens": 8}


@pytest.fixture
def generic_rubric() -> list[dict]:
    return [{"name": "Overall", "criteria_description": "Good?", **{b: f"g{b}" for b in BANDS}}]


@pytest.fixture
def prompts(dummy_prompts) -> pd.DataFrame:
    return dummy_prompts.assign(pool=["sft", "rl", "sft"])


@pytest.fixture
def rubrics() -> pd.DataFrame:
    rows = [{"name": n, "criteria_description": f"{n}?", **{b: f"{n}{b}" for b in BANDS}} for n in ("Rhyme", "Imagery")]
    return pd.DataFrame({"id": ["p3"], "domain": ["Literature & Arts"], "criteria": [json.dumps(rows)], "attempts": [1]})


@pytest.fixture
def inputs(prompts, rubrics, generic_rubric) -> pd.DataFrame:
    return select_synthesis_prompts(prompts, rubrics, {"loop": LOOP}, generic_rubric)


def test_select_synthesis_prompts(inputs):
    assert list(inputs["id"]) == ["p1", "p3"]  # sft pool only
    assert list(inputs["rubric_source"]) == ["generic", "instance"]
    assert [c["name"] for c in json.loads(inputs.loc[0, "criteria"])] == ["Overall"]
    assert [c["name"] for c in json.loads(inputs.loc[1, "criteria"])] == ["Rhyme", "Imagery"]
    assert list(inputs.index) == [0, 1]


def test_select_synthesis_prompts_limit_and_no_rubrics(prompts, rubrics, generic_rubric):
    out = select_synthesis_prompts(prompts, rubrics.iloc[:0], {"num_prompts": 1}, generic_rubric)
    assert list(out["id"]) == ["p1"] and list(out["rubric_source"]) == ["generic"]


def test_select_synthesis_prompts_bad_params(prompts, rubrics, generic_rubric):
    with pytest.raises(ConfigError, match="synthesis.loop.max_round"):
        select_synthesis_prompts(prompts, rubrics, {"loop": {"max_round": 2}}, generic_rubric)


def test_synthesize_trajectories(inputs, fake_llm, llm_params):
    done, failed, metrics = synthesize_trajectories(inputs, {"loop": LOOP}, llm_params, {"mode": "generate"})
    assert list(done["id"]) == ["p1", "p3"] and failed.empty
    assert {"trajectory", "final_answer", "score_before", "score_after", "domain", "rubric_source", "criteria"} <= set(done.columns)
    row = done.set_index("id").loc["p3"]
    assert row["version_scores"] == [5.0, 8.0, 8.0] and row["stop_reason"] == "no_improvement"
    assert [s.kind for s in parse(row["trajectory"]).segments] == ["plan", "draft", "reflection", "revision", "reflection", "revision"]
    assert metrics["synthesis/prompts"]["value"] == 2.0
    assert metrics["synthesis/failed_prompts"]["value"] == 0.0
    assert metrics["synthesis/writer/calls"]["value"] > 0
    assert metrics["synthesis/judge/failed_items"]["value"] == 0.0


def test_synthesize_trajectories_writer_failure(inputs, fake_llm, llm_params):
    def respond(conv, s):
        if role_of(conv) == "draft" and "children" in user_text(conv):
            return Generation(text="", error="HTTP 500 after 5 retries")
        return improving_respond(conv, s)

    fake_llm.backend.respond = respond
    done, failed, metrics = synthesize_trajectories(inputs, {"loop": LOOP}, llm_params, {"mode": "generate"})
    assert list(done["id"]) == ["p3"]
    assert failed.to_dict("records") == [{"id": "p1", "stop_reason": "writer_failed", "error": "HTTP 500 after 5 retries"}]
    assert metrics["synthesis/failed_prompts"]["value"] == 1.0
    assert metrics["synthesis/writer/failures"]["value"] == 1.0


@pytest.fixture
def trajectories() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "domain": ["Education", "Education", "Politics & Law"],
            "score_before": [np.array([4.0, 6.0]), np.array([5.0]), np.array([7.0])],
            "score_after": [np.array([6.0, 6.0]), np.array([3.0]), np.array([float("nan")])],
        }
    )


def test_extract_reflection_steps(trajectories):
    steps = extract_reflection_steps(trajectories)
    assert list(steps.columns) == ["id", "domain", "step", "score_before", "score_after", "delta", "effect"]
    assert list(steps["id"]) == ["a", "a", "b", "c"] and list(steps["step"]) == [1, 2, 1, 1]
    assert list(steps["effect"]) == ["raised", "unchanged", "lowered", "unscored"]
    assert steps["delta"].iloc[:3].tolist() == [2.0, 0.0, -2.0]


def test_summarize_reflection_effects(trajectories):
    metrics = summarize_reflection_effects(extract_reflection_steps(trajectories))
    assert metrics["synthesis/steps"] == {"value": 4.0, "step": 0}
    assert metrics["synthesis/steps_raised_share"]["value"] == 0.25
    assert metrics["synthesis/steps_lowered_share"]["value"] == 0.25
    assert metrics["synthesis/steps_unchanged_share"]["value"] == 0.25
    assert metrics["synthesis/mean_delta"]["value"] == pytest.approx(0.0)


@pytest.mark.parametrize("empty", [pd.DataFrame(columns=["id", "domain", "score_before", "score_after"]), pd.DataFrame()])
def test_no_steps_gives_zero_count_and_no_nan_metrics(empty):
    steps = extract_reflection_steps(empty)  # pd.DataFrame(): every prompt failed
    assert steps.empty
    metrics = summarize_reflection_effects(steps)
    assert metrics == {"synthesis/steps": {"value": 0.0, "step": 0}}
    assert not any(math.isnan(m["value"]) for m in metrics.values())
