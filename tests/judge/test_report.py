"""The DeepResearchGym report judge: key-point labels and quality ratings in both modes."""

from __future__ import annotations

import pytest

from r2_write.judge.judge import JudgeConfig
from r2_write.judge.report import ReportJudge
from r2_write.prompts.report_judge import KEYPOINT_PREFIX, RATING_PREFIX
from tests.fakes import FakeBackend, make_client


def _judge(respond=None, probs=None, mode="generate", **cfg) -> tuple[ReportJudge, FakeBackend]:
    backend = FakeBackend(respond=respond, probs=probs)
    return ReportJudge(make_client(backend), JudgeConfig(mode=mode, **cfg)), backend


def test_generate_mode_retries_malformed_then_counts_failures():
    calls = {}

    def respond(conv, sampling):
        kp = conv[-1]["content"].split("[Key point]")[1].split("[Report]")[0].strip()
        calls[kp] = calls.get(kp, 0) + 1
        if kp == "never":
            return "I refuse to answer in JSON."
        if kp == "late" and calls[kp] == 1:
            return "hmm"
        return '{"label": "Supported", "justification": "ok"}'

    judge, _ = _judge(respond, max_attempts=3)
    out = judge.label_key_points([("fine", "r"), ("late", "r"), ("never", "r")])
    assert [v.value for v in out] == ["Supported", "Supported", None]  # never silently labelled
    assert [v.attempts for v in out] == [1, 2, 3]
    assert out[2].error.startswith("no key-point label")
    assert (judge.stats.parse_failures, judge.stats.failed_items) == (4, 1)


def test_probability_mode_argmax_and_expected_rating():
    def probs(conv, candidates, prefix):
        if prefix == KEYPOINT_PREFIX:
            return {"Supported": 0.2, "Omitted": 0.5, "Contradicted": 0.1}
        assert prefix == RATING_PREFIX and candidates == [str(i) for i in range(11)]
        return {c: (0.5 if c in ("2", "4") else 0.0) for c in candidates}

    judge, backend = _judge(probs=probs, mode="probability")
    [v] = judge.label_key_points([("kp", "report")])
    assert v.value == "Omitted" and "p(Omitted)=0.625" in v.justification
    [r] = judge.rate_quality([("Depth", "q", "report")])
    assert r.value == pytest.approx(3.0)
    assert backend.batches == []  # no generation in probability mode


class _ChunkTokenizer:
    """Two-character tokens: "Supported" -> "Su", "pp", ..."""

    def encode(self, text, add_special_tokens=False):
        return [text[i : i + 2] for i in range(0, len(text), 2)]

    def decode(self, ids):
        return "".join(ids)


def test_probability_mode_scores_first_label_tokens_with_a_local_tokenizer():
    seen = []

    def probs(conv, candidates, prefix):
        seen.append(candidates)
        return {"Su": 0.1, "Om": 0.2, "Co": 0.6}

    judge, backend = _judge(probs=probs, mode="probability")
    backend.tok = _ChunkTokenizer()
    assert judge.label_tokens() == {"Su": "Supported", "Om": "Omitted", "Co": "Contradicted"}
    assert judge.label_key_points([("kp", "r")])[0].value == "Contradicted"
    assert seen == [["Su", "Om", "Co"]]


def test_probability_mode_without_mass_is_a_failure():
    judge, _ = _judge(probs=lambda c, cands, p: {x: 0.0 for x in cands}, mode="probability")
    assert judge.label_key_points([("kp", "r")])[0].value is None
    assert judge.stats.failed_items == 1


def test_report_comes_before_the_item_so_the_items_of_one_report_share_a_prefix():
    """Key points and quality criteria follow the report: everything up to the report's end is
    one prefix for all items of a report (prefilled once by the local backend)."""
    from r2_write.prompts.report_judge import keypoint_messages, quality_messages

    report = "The report body, long enough to matter."
    for a, b, item in [
        (keypoint_messages("first key point", report), keypoint_messages("second key point", report), "first key point"),
        (quality_messages("Depth", "q", report), quality_messages("Breadth", "q", report), "Depth"),
    ]:
        assert a[:-1] == b[:-1]
        text, other = a[-1]["content"], b[-1]["content"]
        end = text.index(report) + len(report)
        assert text[:end] == other[:end] and item in text[end:] and item not in text[:end]
