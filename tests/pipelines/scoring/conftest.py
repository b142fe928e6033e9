"""Scoring-test tables: synthesis trajectories with version scores, and the evaluation sets."""

from __future__ import annotations

import json

import pandas as pd

from r2_write.trajectory import Segment, Trajectory, render


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


def _eval_sets():
    wb = pd.DataFrame({"id": ["1"], "query": ["A WritingBench query."]})
    drg = pd.DataFrame({"id": ["26"], "query": ["why do people cheat in sports"]})
    return wb, drg
