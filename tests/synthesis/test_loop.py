"""The writer-judge loop with a scripted writer and judge."""

from __future__ import annotations

import math
import re
from collections import Counter

import pytest

from r2_write.judge.judge import JudgeConfig, RubricJudge
from r2_write.llm.base import Generation
from r2_write.rubrics.schema import BANDS, Criterion
from r2_write.synthesis import SynthesisConfig, synthesize
from r2_write.trajectory import parse
from tests.fakes import default_respond, role_of, user_text

CRITERIA = [
    Criterion(name=n, criteria_description=f"{n}?", **{b: f"{n} {b}" for b in BANDS}) for n in ("Depth", "Style")
]


def _query_of(conv) -> str:
    return re.search(r"Writing request:\n(.*?)\n", user_text(conv)).group(1)


class Script:
    """Writer: versions ``<query>-v0``, ``-v1``...; judge: ``scores[query][version]`` (None = malformed)."""

    def __init__(self, scores: dict[str, list[float | None]], fail: dict[str, str] | None = None):
        self.scores, self.fail = scores, fail or {}
        self.revisions = Counter()
        self.roles = Counter()

    def __call__(self, conv, sampling):
        role = role_of(conv)
        self.roles[role] += 1
        if role == "judge":
            m = re.search(r"(\w+)-v(\d+)", user_text(conv).split("[Response]")[1])
            s = self.scores[m.group(1)][int(m.group(2))]
            return "I refuse to give a number." if s is None else f'{{"score": {s}, "reason": "needs work"}}'
        query = _query_of(conv)
        if self.fail.get(query) == role:
            return Generation(text="", error=f"{role} failed: HTTP 500")
        if role == "draft":
            return f"{query}-v0"
        if role == "revise":
            self.revisions[query] += 1
            return f"{query}-v{self.revisions[query]}"
        return default_respond(conv, sampling)


def _run(fake_client, script: Script, queries: list[str], **cfg) -> list[dict]:
    fake_client.backend.respond = script
    judge = RubricJudge(fake_client, JudgeConfig(mode="generate", max_attempts=1))
    prompts = [{"id": f"id-{q}", "prompt": q, "criteria": CRITERIA} for q in queries]
    return synthesize(prompts, fake_client, judge, SynthesisConfig(**{"max_rounds": 2, **cfg}))


def test_improving_revisions_run_all_rounds(fake_client):
    (rec,) = _run(fake_client, Script({"alpha": [4, 5, 7]}), ["alpha"])
    assert rec["error"] is None and rec["stop_reason"] == "max_rounds"
    assert rec["n_steps"] == 2
    assert rec["version_scores"] == [4.0, 5.0, 7.0]
    assert rec["score_before"] == [4.0, 5.0] and rec["score_after"] == [5.0, 7.0]
    assert (rec["first_score"], rec["final_score"], rec["best_version"]) == (4.0, 7.0, 2)
    assert rec["final_answer"] == "alpha-v2"
    assert rec["judge_failures"] == 0


def test_rounds_stop_when_a_revision_does_not_improve(fake_client):
    script = Script({"beta": [6, 5, 9, 9]})
    (rec,) = _run(fake_client, script, ["beta"], max_rounds=3)
    assert rec["stop_reason"] == "no_improvement"
    assert rec["n_steps"] == 1 and rec["version_scores"] == [6.0, 5.0]
    assert rec["final_answer"] == "beta-v0" and rec["best_version"] == 0  # the better first draft
    assert script.revisions["beta"] == 1


def test_min_improvement_threshold(fake_client):
    (rec,) = _run(fake_client, Script({"gamma": [5, 6, 9]}), ["gamma"], min_improvement=1.0)
    assert rec["stop_reason"] == "no_improvement" and rec["n_steps"] == 1


def test_prompts_stop_independently(fake_client):
    recs = _run(fake_client, Script({"up": [3, 4, 5], "flat": [5, 5, 5]}), ["up", "flat"])
    by_id = {r["id"]: r for r in recs}
    assert [r["id"] for r in recs] == ["id-up", "id-flat"]  # input order kept
    assert by_id["id-up"]["n_steps"] == 2 and by_id["id-flat"]["n_steps"] == 1


def test_trajectory_parses_with_steps(fake_client):
    (rec,) = _run(fake_client, Script({"delta": [4, 5, 7]}), ["delta"])
    t = parse(rec["trajectory"])
    assert [s.kind for s in t.segments] == ["plan", "draft", "reflection", "revision", "reflection", "revision"]
    assert t.versions() == ["delta-v0", "delta-v1", "delta-v2"]
    assert t.answer == rec["final_answer"]
    assert all(r.text.startswith("The draft lacks") for r, _ in t.steps())


def test_reflection_voice_enforced_and_markers_sanitized(fake_client):
    script = Script({"eps": [4, 6]})

    def respond(conv, sampling):
        role = role_of(conv)
        if role == "reflect":
            return "Add more <think>examples</think>."
        if role == "plan":
            return "<plan>my plan</plan>"
        return script(conv, sampling)

    fake_client.backend.respond = respond
    judge = RubricJudge(fake_client, JudgeConfig(mode="generate", max_attempts=1))
    (rec,) = synthesize([{"id": "e", "prompt": "eps", "criteria": CRITERIA}], fake_client, judge, SynthesisConfig(max_rounds=1))
    t = parse(rec["trajectory"])
    assert t.segments[0].text == "my plan"
    reflection = t.steps()[0][0].text
    assert reflection.startswith("The draft lacks") and "<think>" not in reflection and "examples" in reflection


@pytest.mark.parametrize("failing_role", ["plan", "draft", "reflect", "revise"])
def test_writer_failure_yields_error_record(fake_client, failing_role):
    script = Script({"ok": [4, 6, 8], "bad": [4, 6, 8]}, fail={"bad": failing_role})
    recs = _run(fake_client, script, ["ok", "bad"])
    good, bad = recs
    assert bad == {"id": "id-bad", "stop_reason": "writer_failed", "error": f"{failing_role} failed: HTTP 500"}
    assert good["error"] is None and good["n_steps"] == 2
    parse(good["trajectory"])


def test_judge_failure_stops_with_nan_scores(fake_client):
    (rec,) = _run(fake_client, Script({"zeta": [5, None, 9]}), ["zeta"])
    assert rec["stop_reason"] == "judge_failed" and rec["n_steps"] == 1
    assert rec["version_scores"][0] == 5.0 and math.isnan(rec["version_scores"][1])
    assert math.isnan(rec["score_after"][0])
    assert rec["judge_failures"] == len(CRITERIA)
    assert rec["final_answer"] == "zeta-v0"  # an unscored version is never chosen


def test_calls_are_batched_across_prompts(fake_client):
    script = Script({q: [4, 5, 6] for q in ("a", "b", "c")})
    _run(fake_client, script, ["a", "b", "c"])
    # plan, draft, then per round reflect + revise: each a single batch over all prompts
    writer_batches = [b for b in fake_client.backend.batches if role_of(b[0]) != "judge"]
    assert [len(b) for b in writer_batches] == [3] * 6


def test_unscored_first_draft_stops_as_judge_failure(fake_client):
    (rec,) = _run(fake_client, Script({"eta": [None, 5, 9]}), ["eta"])
    assert rec["stop_reason"] == "judge_failed" and rec["n_steps"] == 1
    assert rec["best_version"] == 1 and rec["final_answer"] == "eta-v1"
