"""Scoring nodes: redundant steps cut, the SFT set, disjointness against the evaluation sets."""

from __future__ import annotations

import pandas as pd
import pytest

from r2_write.data_io import DataOverlapError
from r2_write.pipelines.scoring.nodes import build_sft_set, check_dataset_disjointness, trim_redundant_steps
from r2_write.trajectory import parse
from tests.pipelines.scoring.conftest import _eval_sets, _trajectories


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
