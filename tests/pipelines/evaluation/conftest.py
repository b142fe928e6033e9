"""Evaluation fixtures: tiny benchmark tables, parameters, and a scripted fake for every role."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from r2_write.rubrics.schema import BANDS
from tests.fakes import FakeBackend, make_client, role_of, user_text

TRAJECTORY = (
    "<think>\n<plan>\nplan\n</plan>\n<draft>\ndraft\n</draft>\n<reflection>\nThe draft lacks detail.\n</reflection>\n"
    "<revision>\nrevised\n</revision>\n</think>\nFinal answer with https://example.org/source."
)


def eval_respond(conv, sampling):
    """Rubric judge 7; key points Supported / Omitted alternating by point; ratings 6; writers a trajectory."""
    text = user_text(conv)
    if role_of(conv) == "judge":
        return '{"score": 7, "reason": "fine"}'
    if "[Key point]" in text:
        label = "Omitted" if "second" in text.split("[Key point]")[1].split("[Report]")[0] else "Supported"
        return '{"label": "%s", "justification": "j"}' % label
    if '"rating"' in text:
        return '{"rating": 6, "justification": "j"}'
    return TRAJECTORY


@pytest.fixture
def eval_llm(monkeypatch):
    """Judges (roles.get_client) and every variant's writer (nodes._policy_client) are one fake client."""
    client = make_client(FakeBackend(respond=eval_respond))
    monkeypatch.setattr("r2_write.roles.get_client", lambda cfg, **kw: client)
    monkeypatch.setattr("r2_write.pipelines.evaluation.nodes._policy_client", lambda llm, model: client)
    return client


def _criteria(prefix: str, n: int = 5) -> str:
    return json.dumps([{"name": f"{prefix} {k}", "criteria_description": f"{prefix} {k}?", **{b: f"{b}" for b in BANDS}} for k in range(n)])


@pytest.fixture
def wb_queries() -> pd.DataFrame:
    """Two WritingBench files as ``writingbench_queries`` loads them: query 1 is in both."""
    return pd.DataFrame(
        {
            "id": ["1", "2", "3", "900"],
            "domain": ["Education", "Politics & Law", "Education", "Education"],
            "subdomain": ["Lesson Plans", "Policy Memos", "Lesson Plans", ""],
            "query": ["Write a lesson plan.", "Draft a policy memo.", "Explain fractions.", "Write 500 words on tides."],
            "criteria": [_criteria("A"), _criteria("B"), _criteria("C"), _criteria("C")],
            "subsets": ["format,length", "format", "format", "length"],
        }
    )


@pytest.fixture
def drg_queries() -> pd.DataFrame:
    kps = [{"point_number": i + 1, "point_content": c} for i, c in enumerate(["first point", "second point", "third point"])]
    return pd.DataFrame({"id": ["26", "27"], "query": ["why do people cheat in sports", "how do tides work"],
                         "key_points": [json.dumps(kps), json.dumps(kps[:2])]})


@pytest.fixture
def eval_params() -> dict:
    return {
        "generation": {"temperature": 0.0, "max_new_tokens": 24, "seed": 0},
        "writingbench": {"num_queries": {"format": 2, "length": 2}, "judge": {"mode": "generate"}},
        "deepresearchgym": {"num_queries": 1, "max_key_points": 3, "retriever": {"kind": "closed_book"},
                            "judge": {"mode": "generate"}},
    }


@pytest.fixture
def steps() -> pd.DataFrame:
    return pd.DataFrame(
        {"id": ["p1", "p1", "p2"], "domain": ["Education", "Education", "Finance & Business"], "step": [1, 2, 1],
         "score_before": [3.0, 4.0, 5.0], "score_after": [4.0, 4.0, 4.5], "delta": [1.0, 0.0, -0.5],
         "effect": ["raised", "unchanged", "lowered"]}
    )
