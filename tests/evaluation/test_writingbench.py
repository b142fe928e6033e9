"""WritingBench aggregation against hand-computed values and the official script's formulas."""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict

import pandas as pd
import pytest

from r2_write.evaluation.writingbench import aggregate_writingbench, generate_responses, judge_responses
from r2_write.judge.judge import JudgeConfig, RubricJudge
from r2_write.llm.base import Generation
from r2_write.llm.config import SamplingParams
from r2_write.rubrics.schema import BANDS
from tests.fakes import FakeBackend, make_client, role_of

NAN = math.nan


@pytest.fixture
def scores() -> pd.DataFrame:
    rows = [
        ("q1", "Education", [8, 6, 10, NAN, 7]),
        ("q2", "Education", [5, 5, 5, 5, 5]),
        ("q3", "Finance & Business", [9, 9, 9, 3, None]),
        ("q4", "Politics & Law", [None] * 5),
    ]
    return pd.DataFrame(
        [(i, d, f"c{k}", s) for i, d, ss in rows for k, s in enumerate(ss)], columns=["id", "domain", "criterion", "score"]
    )


def test_aggregate_hand_computed(scores):
    r = aggregate_writingbench(scores)
    # overall = mean of ALL scored criteria (86 / 13), not the mean of query means (6.75)
    assert r["overall"] == pytest.approx(86 / 13)
    assert r["overall_100"] == pytest.approx(860 / 13)
    assert r["per_query"] == pytest.approx({"q1": 7.75, "q2": 5.0, "q3": 7.5})
    # domain = mean of its queries' means; a domain with no scored query is absent
    assert r["domains"] == pytest.approx({"Education": 6.375, "Finance & Business": 7.5})
    assert list(r["domains"]) == ["Finance & Business", "Education"]  # WritingBench domain order
    assert r["domains_100"]["Education"] == pytest.approx(63.75)
    assert (r["n_queries"], r["n_scored"], r["n_unscored"], r["n_queries_unscored"]) == (3, 13, 7, 1)


def _official(records: list[dict], domains: dict[str, str]):
    """calculate_scores.py (read_scores_file + calculate_domain_scores), transliterated."""
    scores_data, total_sum, total_count = {}, defaultdict(float), defaultdict(int)
    for rec in records:
        avg, n = 0, 0
        for evals in rec["scores"].values():
            for e in evals:
                avg += e["score"]
                total_sum[rec["index"]] += e["score"]
                total_count[rec["index"]] += 1
                n += 1
        scores_data[rec["index"]] = avg / n
    overall = sum(total_sum.values()) / sum(total_count.values())
    dsum, dcount = defaultdict(float), defaultdict(int)
    for idx, s in scores_data.items():
        dsum[domains[idx]] += s
        dcount[domains[idx]] += 1
    return overall, {d: dsum[d] / dcount[d] for d in dsum}


def test_aggregate_matches_official_script_on_random_scores():
    rng = random.Random(0)
    domains = ["Education", "Politics & Law", "Literature & Arts"]
    rows, records, dom = [], [], {}
    for q in range(25):
        qid, d = f"q{q}", rng.choice(domains)
        dom[qid] = d
        crit = {f"c{k}": [{"score": rng.randint(1, 10)}] for k in range(rng.randint(1, 5))}
        records.append({"index": qid, "scores": crit})
        rows += [(qid, d, c, e[0]["score"]) for c, e in crit.items()]
    r = aggregate_writingbench(pd.DataFrame(rows, columns=["id", "domain", "criterion", "score"]))
    overall, by_domain = _official(records, dom)
    assert r["overall"] == pytest.approx(overall)
    assert r["domains"] == pytest.approx(by_domain)


def test_aggregate_empty_and_missing_columns():
    r = aggregate_writingbench(pd.DataFrame({"id": ["a"], "domain": ["Education"], "criterion": ["c"], "score": [None]}))
    assert math.isnan(r["overall"]) and r["domains"] == {} and r["n_unscored"] == 1
    with pytest.raises(ValueError, match="score"):
        aggregate_writingbench(pd.DataFrame({"id": [], "domain": [], "criterion": []}))


def _criteria(*names) -> str:
    return json.dumps([{"name": n, "criteria_description": f"{n}?", **{b: f"{n} {b}" for b in BANDS}} for n in names])


def test_generate_cuts_thinking_and_judge_skips_failed_generations():
    def respond(conv, sampling):
        if role_of(conv) == "judge":
            assert "secret plan" not in conv[-1]["content"]  # thinking never reaches the judge
            return '{"score": 7, "reason": "fine"}'
        if "FAIL" in conv[-1]["content"]:
            return Generation(text="", error="boom")
        return "<think>\n<plan>\nsecret plan\n</plan>\n</think>\nThe answer."

    client = make_client(FakeBackend(respond=respond))
    queries = pd.DataFrame(
        {"id": ["a", "b"], "domain": ["Education"] * 2, "subdomain": ["", ""], "query": ["Write.", "FAIL"],
         "criteria": [_criteria("X", "Y"), _criteria("Z")]}
    )
    resp = generate_responses(client, queries, SamplingParams(max_new_tokens=8))
    assert resp.loc[0, "answer"] == "The answer." and resp.loc[0, "response"].startswith("<think>")
    assert resp.loc[1, "error"] == "boom"
    scores = judge_responses(RubricJudge(client, JudgeConfig(mode="generate")), resp)
    assert list(scores["criterion"]) == ["X", "Y", "Z"]
    assert list(scores["score"][:2]) == [7.0, 7.0] and math.isnan(scores.loc[2, "score"])
    assert scores.loc[2, "error"].startswith("generation failed")


def test_breakdown_by_domain_subset_and_subdomain_hand_computed():
    from r2_write.evaluation.compare import breakdown_markdown, breakdown_wide
    from r2_write.evaluation.writingbench import breakdown_table

    rows = [  # id, domain, subdomain, subsets, scores of its criteria
        ("a", "Education", "Lesson Plans", "format,length", [8, 6]),
        ("b", "Education", "Exams", "format", [10]),
        ("c", "Politics & Law", "Memos", "length", [4, 5, None]),
        ("d", "Politics & Law", "Memos", "length", [None]),  # never scored: in no mean
    ]
    scores = pd.DataFrame([(i, d, s, t, f"c{k}", v) for i, d, s, t, vs in rows for k, v in enumerate(vs)],
                          columns=["id", "domain", "subdomain", "subsets", "criterion", "score"])
    t = breakdown_table(scores).set_index(["level", "group"])
    assert list(t.index) == [("domain", "Politics & Law"), ("domain", "Education"), ("subset", "format"), ("subset", "length"),
                             ("subdomain", "Memos"), ("subdomain", "Exams"), ("subdomain", "Lesson Plans")]
    assert t.loc[("domain", "Education"), "score"] == 8.5  # (7 + 10) / 2
    assert t.loc[("subset", "format"), "score_100"] == 85.0 and t.loc[("subset", "length"), "score"] == 5.75  # (7 + 4.5) / 2
    assert t.loc[("subdomain", "Memos"), ["domain", "n_queries", "score"]].tolist() == ["Politics & Law", 1, 4.5]
    assert aggregate_writingbench(scores)["subsets_100"] == {"format": 85.0, "length": 57.5}

    wide = breakdown_wide([breakdown_table(scores).assign(variant="base"), breakdown_table(scores.assign(score=10)).assign(variant="sft")])
    assert list(wide.columns) == ["level", "group", "domain", "n_queries", "base", "sft"]
    assert wide.set_index("group").loc["Memos", ["n_queries", "base", "sft"]].tolist() == [2, 45.0, 100.0]  # sft scored d too
    md = breakdown_markdown(wide)
    assert "## WritingBench by requirement subset" in md and "| format | 2 | 85.0 | 100.0 |" in md
    assert "| Politics & Law | Memos | 2 | 45.0 | 100.0 |" in md


def _traj(*versions: str, answer: str | None = None) -> str:
    segs = [f"<draft>\n{versions[0]}\n</draft>"]
    for k, v in enumerate(versions[1:]):
        segs += [f"<reflection>\nThe draft lacks point {k}.\n</reflection>", f"<revision>\n{v}\n</revision>"]
    return "<think>\n" + "\n".join(segs) + "\n</think>\n" + (answer if answer is not None else versions[-1])


def test_reflection_steps_of_a_variants_own_responses(tmp_path):
    """Each version is judged once; the answer's verdicts come from the cache; effects as the synthesis steps."""
    from r2_write.evaluation.writingbench import judge_reflection_steps

    points = {"weak draft": 4, "better": 7, "worse": 5, "same again": 5}

    def respond(conv, sampling):
        response = conv[-1]["content"].split("[Response]")[1].split("[Criterion]")[0].strip()
        return '{"score": %d, "reason": "r"}' % points.get(response, 6)

    backend = FakeBackend(respond=respond)
    client = make_client(backend, cache_path=tmp_path / "cache.sqlite")
    judge = RubricJudge(client, JudgeConfig(mode="generate"))
    responses = pd.DataFrame(
        {"id": ["a", "b", "c", "d"], "domain": ["Education", "Education", "Politics & Law", "Education"],
         "query": ["Write."] * 4, "criteria": [_criteria("X", "Y")] * 4,
         "response": [_traj("weak draft", "better", "worse", "same again"), _traj("only a draft"), "no thinking", _traj("x", "y")],
         "answer": ["same again", "only a draft", "no thinking", "y"], "error": [None, None, None, "boom"]}
    )
    judge_responses(judge, responses.iloc[:1].assign(answer="same again"))  # the answer, judged by the evaluation
    before = backend.n_generated
    steps = judge_reflection_steps(judge, responses)
    assert backend.n_generated - before == 2 * 3  # weak draft, better, worse (x 2 criteria); the answer is cached
    assert steps[["id", "step", "score_before", "score_after", "effect"]].values.tolist() == [
        ["a", 1, 4.0, 7.0, "raised"], ["a", 2, 7.0, 5.0, "lowered"], ["a", 3, 5.0, 5.0, "unchanged"],
    ]  # b has no revision, c no trajectory, d failed to generate
    assert steps["delta"].tolist() == [3.0, -2.0, 0.0]

    empty = judge_reflection_steps(judge, responses.iloc[1:3])
    assert empty.empty and list(empty.columns) == ["id", "domain", "step", "score_before", "score_after", "delta", "effect"]
