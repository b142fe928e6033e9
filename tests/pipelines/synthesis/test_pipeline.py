"""Synthesis pipeline run by SequentialRunner on an in-memory catalog."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from kedro.io import DataCatalog
from kedro.runner import SequentialRunner

from r2_write.pipelines.synthesis import create_pipeline
from r2_write.rubrics.schema import BANDS
from r2_write.trajectory import parse
from tests.pipelines.conftest import memory_catalog

NODES = [
    "select_synthesis_prompts_node",
    "synthesize_trajectories_node",
    "extract_reflection_steps_node",
    "summarize_reflection_effects_node",
]


@pytest.fixture
def catalog(dummy_prompts, llm_params, project_params) -> DataCatalog:
    data = {
        "prompts": dummy_prompts.assign(pool=["sft", "sft", "rl"]),
        "rubrics.accepted": pd.DataFrame(columns=["id", "domain", "criteria", "attempts"]),
        "params:synthesis": {"num_prompts": 2, "loop": {"max_rounds": 2, "plan_tokens": 8, "draft_tokens": 16, "reflection_tokens": 8}},
        "params:generic_rubric": project_params["generic_rubric"],
        "params:llm": llm_params,
        "params:judge": {**project_params["judge"], "mode": "generate"},
    }
    return memory_catalog(data, keep=("synthesis.inputs", "synthesis.trajectories", "synthesis.steps"))


def test_pipeline_wiring():
    pipe = create_pipeline()
    assert [n.name for n in pipe.nodes] == NODES  # topological order
    assert all("synthesis" in n.tags for n in pipe.nodes)
    assert "synthesis.trajectories" in pipe.all_outputs()


def test_synthesis_pipeline_runs(catalog, fake_llm):
    SequentialRunner().run(create_pipeline(), catalog)
    traj = catalog.load("synthesis.trajectories")
    assert list(traj["id"]) == ["p1", "p2"]
    for text, answer in zip(traj["trajectory"], traj["final_answer"]):
        assert parse(text).answer == answer
    steps = catalog.load("synthesis.steps")
    assert list(steps["effect"]) == ["raised", "unchanged"] * 2  # improving_respond: 5 -> 8 -> 8
    metrics = catalog.load("synthesis_step_metrics")
    assert metrics["synthesis/steps"]["value"] == 4.0
    assert metrics["synthesis/steps_raised_share"]["value"] == 0.5
    assert catalog.load("synthesis_call_metrics")["synthesis/writer/calls"]["value"] > 0


def test_synthesis_pipeline_slice_from_steps(catalog):
    pipe = create_pipeline().from_nodes("extract_reflection_steps_node").to_nodes("summarize_reflection_effects_node")
    catalog["synthesis.trajectories"] = pd.DataFrame(
        {"id": ["x"], "domain": ["Education"], "score_before": [[3.0]], "score_after": [[2.0]]}
    )
    SequentialRunner().run(pipe, catalog)
    assert catalog.load("synthesis_step_metrics")["synthesis/steps_lowered_share"]["value"] == 1.0


@pytest.mark.slow
def test_synthesis_pipeline_embedded_model(catalog, embedded_client, monkeypatch):
    """The real model, one prompt, one round, tiny limits; probability-mode judge."""
    monkeypatch.setattr("r2_write.roles.get_client", lambda cfg, **kw: embedded_client)
    catalog["params:synthesis"] = {"num_prompts": 1, "loop": {"max_rounds": 1, "plan_tokens": 8, "draft_tokens": 24, "reflection_tokens": 12}}
    catalog["params:judge"] = {"mode": "probability"}
    one = [{"name": "Clarity", "criteria_description": "Is it clear?", **{b: f"band {b}" for b in BANDS}}]
    catalog["params:generic_rubric"] = one  # one criterion: a fifth of the judge's forward passes
    SequentialRunner().run(create_pipeline(), catalog)
    traj = catalog.load("synthesis.trajectories")
    failures = catalog.load("synthesis.failures")
    assert len(traj) == 1 and failures.empty
    t = parse(traj.loc[0, "trajectory"])
    assert [s.kind for s in t.segments] == ["plan", "draft", "reflection", "revision"]
    assert all(1.0 <= s <= 10.0 for s in traj.loc[0, "version_scores"])
    assert not math.isnan(catalog.load("synthesis_step_metrics")["synthesis/steps"]["value"])
