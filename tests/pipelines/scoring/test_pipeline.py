"""Scoring pipeline: SFT/RL sets, disjointness against evaluation sets, summaries."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from kedro.runner import SequentialRunner

from r2_write.data_io import DataOverlapError
from r2_write.pipelines.scoring import create_pipeline
from r2_write.pipelines.scoring.nodes import build_sft_set, check_dataset_disjointness, trim_redundant_steps
from r2_write.trajectory import Segment, Trajectory, parse, render
from tests.pipelines.conftest import memory_catalog


def _criteria(project_params) -> str:
    from r2_write.rubrics.schema import generic_rubric

    return json.dumps([c.to_row() for c in generic_rubric(project_params["generic_rubric"])])


def _steps(draft: str, *revisions: str) -> str:
    segments = [Segment("draft", draft)]
    for r in revisions:
        segments += [Segment("reflection", f"The draft lacks {r}."), Segment("revision", r)]
    return render(Trajectory(segments, answer=revisions[-1] if revisions else draft))


def _trajectories(crit: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["p1", "p2", "p3"],
            "domain": ["Education"] * 3,
            "language": ["en"] * 3,
            "prompt": ["Explain tides.", "Write a memo.", "Write a poem."],
            "trajectory": [_steps("D1", "A1"), _steps("A2", "R2"), _steps("D3", "A3", "R3")],
            "final_answer": ["A1", "A2", "A3"],
            "criteria": [crit] * 3,
            "version_scores": [[4.0, 7.0], [6.0, 6.0], [5.0, 5.5, 5.0]],
            "first_score": [4.0, 6.0, 5.0],
            "final_score": [7.0, 6.0, 5.5],
            "n_steps": [1, 1, 2],
        }
    )


def test_trailing_redundant_steps_are_cut_before_sft():
    trimmed, metrics = trim_redundant_steps(_trajectories("[]"), {"min_gain": 0.25})
    # p1 improved (kept whole); p2's only step changed nothing; p3: +0.5 then -0.5 -> cut after the first
    assert list(trimmed["steps_cut"]) == [0, 1, 1] and list(trimmed["n_steps"]) == [1, 0, 1]
    assert list(trimmed["final_answer"]) == ["A1", "A2", "A3"]
    assert list(trimmed["final_score"]) == [7.0, 6.0, 5.5]
    for text, answer in zip(trimmed["trajectory"], trimmed["final_answer"]):
        traj = parse(text)
        assert traj.answer == answer == traj.versions()[-1]  # every example ends at its answer
    assert "R3" not in trimmed.loc[2, "trajectory"] and "R2" not in trimmed.loc[1, "trajectory"]
    assert metrics["scoring/steps_cut"]["value"] == 2.0 and metrics["scoring/trajectories_trimmed"]["value"] == 2.0
    assert list(trim_redundant_steps(_trajectories("[]"), {"min_gain": 0.6})[0]["steps_cut"]) == [0, 1, 2]


def _eval_sets():
    wb = pd.DataFrame({"id": ["1"], "query": ["A WritingBench query."]})
    drg = pd.DataFrame({"id": ["26"], "query": ["why do people cheat in sports"]})
    return wb, drg


def test_sft_set_keeps_passing_improved_trajectories():
    scored = _trajectories("[]").assign(answer_score=[7.0, 8.0, 2.0])
    kept, rejected = build_sft_set(scored, {"min_final_score": 5.0, "require_improvement": True})
    assert list(kept["id"]) == ["p1"]
    assert kept.loc[0, "completion"].endswith("A1")
    assert rejected.set_index("id")["reason"].to_dict() == {"p2": "no_improvement", "p3": "below_threshold"}


def test_overlap_with_an_evaluation_set_fails_loudly():
    wb, drg = _eval_sets()
    sft = pd.DataFrame({"id": ["p1"], "prompt": ["Why do people  CHEAT in sports?"]})
    rl = pd.DataFrame({"id": ["p2"], "prompt": ["Something else."]})
    with pytest.raises(DataOverlapError, match="'sft' and 'evaluation'.*deepresearchgym:26"):
        check_dataset_disjointness(sft, rl, wb, drg)
    with pytest.raises(DataOverlapError, match="share prompt ids"):
        check_dataset_disjointness(sft, sft, wb, drg)


def test_evaluation_sets_may_overlap_each_other():
    wb, drg = _eval_sets()
    wb = pd.concat([wb, wb.assign(id="length:1")], ignore_index=True)  # the WritingBench subsets share queries
    sft = pd.DataFrame({"id": ["p1"], "prompt": ["A prompt."]})
    rl = pd.DataFrame({"id": ["p2"], "prompt": ["Another prompt."]})
    checks = check_dataset_disjointness(sft, rl, wb, drg)
    assert checks["disjoint"].all() and list(checks["set"]) == ["sft", "rl", "evaluation"]


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
