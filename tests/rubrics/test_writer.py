"""Rubric writer: parsing good and bad answers (with the reason), retries, failures kept."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from r2_write.llm.base import Generation
from r2_write.rubrics.schema import BANDS
from r2_write.rubrics.writer import RubricParseError, RubricWriterConfig, parse_rubric, write_rubrics
from tests.fakes import rubric_json, user_text


def _row(k: int = 1, **change) -> dict:
    row = {"name": f"C{k}", "criteria_description": f"Is {k} ok?", **{b: f"b{b}" for b in BANDS}}
    row.update(change)
    return {key: v for key, v in row.items() if v is not None}


def test_parse_good_answer_with_chatter():
    text = "Here you go:\n```json\n" + rubric_json(3) + "\n```\nLet me know!"
    crit = parse_rubric(text, 3)
    assert [c.name for c in crit] == ["Criterion 1", "Criterion 2", "Criterion 3"]


@pytest.mark.parametrize(
    "text, n, reason",
    [
        ("", 2, "no JSON list in the answer"),
        ("I cannot help with that.", 2, "no JSON list in the answer"),
        ('[{"name": "a",]', 1, "invalid JSON: "),
        (json.dumps([_row(1)]), 2, "expected a list of 2 criteria, got 1"),
        (json.dumps([_row(1), _row(2), _row(3)]), 2, "expected a list of 2 criteria, got 3"),
        (json.dumps([_row(1), _row(2, name="")]), 2, "criterion 2, field name: Value error, must be a non-empty string"),
        (json.dumps([_row(1, **{"3-4": None})]), 1, "criterion 1, field bands: Value error, score bands ['3-4'] missing"),
        (json.dumps([_row(1, criteria_description=None)]), 1, "criterion 1, field criteria_description: Field required"),
        (json.dumps(["just a string"]), 1, "criterion 1, field "),
    ],
)
def test_parse_bad_answers_give_the_reason(text, n, reason):
    with pytest.raises(RubricParseError) as exc:
        parse_rubric(text, n)
    assert str(exc.value).startswith(reason)


def test_write_rubrics_retries_invalid_and_keeps_failures(fake_client):
    tries = Counter()

    def respond(conv, sampling):
        q = user_text(conv).split("\n")[1]
        tries[q] += 1
        if q == "good":
            return rubric_json(2)
        if q == "second try":
            return rubric_json(2) if tries[q] == 2 else "[]"
        if q == "broken call":
            return Generation(text="", error="HTTP 429")
        return "no rubric today"

    fake_client.backend.respond = respond
    cfg = RubricWriterConfig(n_criteria=2, max_attempts=2, seed=5)
    out = write_rubrics([("a", "good"), ("b", "second try"), ("c", "never"), ("d", "broken call")], fake_client, cfg)
    by_id = {o.id: o for o in out}
    assert [o.id for o in out] == ["a", "b", "c", "d"]
    assert len(by_id["a"].criteria) == 2 and by_id["a"].attempts == 1 and by_id["a"].error is None
    assert len(by_id["b"].criteria) == 2 and by_id["b"].attempts == 2 and by_id["b"].error is None
    assert by_id["c"].criteria is None and by_id["c"].attempts == 2 and by_id["c"].error == "no JSON list in the answer"
    assert by_id["d"].criteria is None and by_id["d"].error == "call failed: HTTP 429"
    assert [len(b) for b in fake_client.backend.batches] == [4, 3]  # only invalid ones retried


def test_write_rubrics_prompt_asks_for_n(fake_client):
    write_rubrics([("a", "Write a poem")], fake_client, RubricWriterConfig(n_criteria=3, max_attempts=1))
    assert "exactly 3" in user_text(fake_client.backend.batches[0][0])


def test_retry_uses_new_seed(fake_client):
    fake_client.backend.respond = lambda conv, s: "nope"
    write_rubrics([("a", "q")], fake_client, RubricWriterConfig(max_attempts=3))
    assert len(set(fake_client.backend.seeds)) == 3
