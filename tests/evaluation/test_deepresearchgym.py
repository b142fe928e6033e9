"""DeepResearchGym: reports, judged frames, aggregation (the report judge: tests/judge/test_report.py)."""

from __future__ import annotations

import json
import math
import random

import pandas as pd
import pytest

from r2_write.evaluation.deepresearchgym import (
    aggregate_drg,
    generate_reports,
    has_source_urls,
    judge_key_points,
    judge_quality,
)
from r2_write.judge.judge import JudgeConfig
from r2_write.judge.report import ReportJudge
from r2_write.llm.config import SamplingParams
from r2_write.prompts.report_judge import QUALITY_CRITERIA
from tests.fakes import FakeBackend, make_client

NAN = math.nan


# --------------------------------------------------------------------------- frames


@pytest.fixture
def reports() -> pd.DataFrame:
    kps = json.dumps([{"point_number": 1, "point_content": "Alpha"}, {"point_number": 2, "point_content": "Beta"}])
    return pd.DataFrame(
        {
            "id": ["q1", "q2"],
            "query": ["Why?", "How?"],
            "key_points": [kps, kps],
            "passages": ["[]", "[]"],
            "report": ["<think>\nx\n</think>\nReport one, see https://example.org/a.", "failed"],
            "answer": ["Report one, see https://example.org/a.", ""],
            "response_tokens": [9, 0],
            "finish_reason": ["stop", "stop"],
            "error": [None, "boom"],
        }
    )


def test_generate_reports_uses_passages_and_cuts_thinking():
    seen = []

    def respond(conv, sampling):
        seen.append(conv[-1]["content"])
        return "<think>\n<plan>\np\n</plan>\n</think>\nFinal report."

    client = make_client(FakeBackend(respond=respond))
    queries = pd.DataFrame({"id": ["1", "2"], "query": ["Why A?", "Why B?"], "key_points": ["[]", "[]"]})
    passages = pd.DataFrame({"id": ["1", "2"], "passages": [json.dumps([{"url": "https://x.org", "text": "Fact."}]), "[]"]})
    out = generate_reports(client, queries, passages, SamplingParams(max_new_tokens=8))
    assert list(out["answer"]) == ["Final report.", "Final report."]
    assert "https://x.org" in seen[0] and "Sources" in seen[0]
    assert "Retrieved sources" not in seen[1] and "Do not invent URLs" in seen[1]


def test_judge_frames_skip_failed_reports_and_apply_support_rule(reports):
    backend = FakeBackend(
        respond=lambda conv, s: '{"label": "Supported", "justification": "j"}'
        if "[Key point]" in conv[-1]["content"] else '{"rating": 6, "justification": "j"}'
    )
    judge = ReportJudge(make_client(backend), JudgeConfig(mode="generate"))
    labels = judge_key_points(judge, reports)
    assert list(labels["id"]) == ["q1", "q1"] and list(labels["point_number"]) == [1, 2]
    assert set(labels["label"]) == {"Supported"}
    quality = judge_quality(judge, reports)
    assert list(quality["criterion"]) == list(QUALITY_CRITERIA) and set(quality["id"]) == {"q1"}
    assert (quality["rating"] == 6).all()  # q1 cites a URL: Support asked like the others
    no_url = reports.assign(answer=["Plain report.", ""])
    q2 = judge_quality(judge, no_url)
    assert q2.set_index("criterion").loc["Support", "rating"] == 0.0
    assert q2.set_index("criterion").loc["Support", "attempts"] == 0  # rule applied, judge not asked
    assert has_source_urls("see (https://a.b/c)") and not has_source_urls("see www dot com")


# --------------------------------------------------------------------------- aggregation


def test_aggregate_drg_hand_computed():
    labels = pd.DataFrame(
        [("q1", 1, "Supported"), ("q1", 2, "Supported"), ("q1", 3, "Omitted"), ("q1", 4, "Contradicted"),
         ("q2", 1, "Supported"), ("q2", 2, "Omitted"), ("q2", 3, None),
         ("q3", 1, "Contradicted"), ("q3", 2, "Contradicted")],
        columns=["id", "point_number", "label"],
    )
    quality = pd.DataFrame(
        [("q1", c, r) for c, r in zip(QUALITY_CRITERIA, [6, 4, 5, 5, 0, 4])]
        + [("q2", c, r) for c, r in zip(QUALITY_CRITERIA, [10, 8, 7, 9, 6, NAN])],
        columns=["id", "criterion", "rating"],
    )
    r = aggregate_drg(labels, quality)
    assert r["kpr"] == pytest.approx((50 + 50 + 0) / 3)
    assert r["kpc"] == pytest.approx((25 + 0 + 100) / 3)
    assert r["omitted_rate"] == pytest.approx((25 + 50 + 0) / 3)
    # q1: 24/60 = 40; q2: 40 over 5 rated criteria = 80
    assert r["quality_overall"] == pytest.approx(60.0)
    assert r["quality"] == pytest.approx({"Clarity": 8, "Depth": 6, "Balance": 6, "Breadth": 7, "Support": 3, "Insightfulness": 4})
    assert r["quality_100"]["Support"] == pytest.approx(30)
    assert list(r["quality"]) == list(QUALITY_CRITERIA)
    assert (r["n_queries"], r["n_key_points"], r["n_unlabelled"], r["n_quality_queries"], r["n_unrated"]) == (3, 8, 1, 2, 1)


def test_aggregate_drg_matches_official_formulas_on_random_labels():
    rng = random.Random(1)
    labels, quality, official_kpr, official_kpc, official_q = [], [], [], [], []
    for q in range(20):
        labs = [rng.choice(["Supported", "Omitted", "Contradicted"]) for _ in range(rng.randint(1, 12))]
        labels += [(f"q{q}", i + 1, lab) for i, lab in enumerate(labs)]
        official_kpr.append(labs.count("Supported") / len(labs) * 100)
        official_kpc.append(labs.count("Contradicted") / len(labs) * 100)
        ratings = [rng.randint(0, 10) for _ in QUALITY_CRITERIA]
        quality += [(f"q{q}", c, r) for c, r in zip(QUALITY_CRITERIA, ratings)]
        official_q.append(sum(ratings) / (len(ratings) * 10) * 100)
    r = aggregate_drg(pd.DataFrame(labels, columns=["id", "point_number", "label"]), pd.DataFrame(quality, columns=["id", "criterion", "rating"]))
    assert r["kpr"] == pytest.approx(sum(official_kpr) / 20)
    assert r["kpc"] == pytest.approx(sum(official_kpc) / 20)
    assert r["quality_overall"] == pytest.approx(sum(official_q) / 20)


def test_aggregate_drg_rejects_unknown_labels_and_handles_empty():
    with pytest.raises(ValueError, match="unknown key-point label"):
        aggregate_drg(pd.DataFrame({"id": ["q"], "point_number": [1], "label": ["Partly"]}), pd.DataFrame(columns=["id", "criterion", "rating"]))
    r = aggregate_drg(pd.DataFrame(columns=["id", "point_number", "label"]), pd.DataFrame(columns=["id", "criterion", "rating"]))
    assert math.isnan(r["kpr"]) and math.isnan(r["quality_overall"]) and r["n_queries"] == 0


def test_query_with_no_labelled_key_point_is_unlabelled_not_0_or_100():
    labels = pd.DataFrame(
        [("q1", 1, "Supported"), ("q1", 2, "Omitted"), ("q2", 1, None), ("q2", 2, None)], columns=["id", "point_number", "label"]
    )
    quality = pd.DataFrame(columns=["id", "criterion", "rating"])
    r = aggregate_drg(labels, quality)
    assert r["kpr"] == 50.0 and r["n_queries"] == 1 and r["n_queries_unlabelled"] == 1 and r["n_unlabelled"] == 2
    assert not r["all_supported"]
    every = aggregate_drg(labels.assign(label=None), quality)  # every key point failed: no KPR at all
    assert math.isnan(every["kpr"]) and math.isnan(every["kpc"]) and every["n_queries_unlabelled"] == 2


def test_all_supported_flags_a_degenerate_judge():
    labels = pd.DataFrame([("q1", 1, "Supported"), ("q1", 2, "Supported"), ("q2", 1, "Supported"), ("q2", 2, None)],
                          columns=["id", "point_number", "label"])
    quality = pd.DataFrame(columns=["id", "criterion", "rating"])
    assert aggregate_drg(labels, quality)["all_supported"]
    assert not aggregate_drg(labels.head(1), quality)["all_supported"]  # one key point says nothing
    assert not aggregate_drg(labels.replace({"label": {"Supported": "Omitted"}}).head(1), quality)["all_supported"]
