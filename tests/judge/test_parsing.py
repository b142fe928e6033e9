"""Judge answer parsing: JSON anywhere, fenced, score / label lines; clear errors otherwise."""

from __future__ import annotations

import pytest

from r2_write.judge.parsing import (
    JudgeParseError,
    KeypointParseError,
    parse_keypoint_label,
    parse_rating,
    parse_score,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"score": 7, "reason": "clear structure"}', (7, "clear structure")),
        ('```json\n{"score": 8, "reason": "good"}\n```', (8, "good")),
        ('Sure! Here is my verdict: {"score": "9", "reason": "vivid"} Hope it helps.', (9, "vivid")),
        ('{"score": 3.0, "justification": "thin"}', (3, "thin")),
        ('{"note": 1} {"score": 10, "reason": "x"}', (10, "x")),
        ('{"score": 1}', (1, "")),
    ],
)
def test_json_answers(text, expected):
    assert parse_score(text) == expected


@pytest.mark.parametrize(
    "text, score",
    [
        ("Score: 3/10 because it rambles", 3),
        ("score = 6, reason: decent", 6),
        ('{"score": 5, "reason": "unterminated', 5),  # broken JSON, score line still readable
        ("'score': '4'", 4),
    ],
)
def test_score_line_fallback(text, score):
    assert parse_score(text)[0] == score


def test_fallback_reason_after_score():
    assert parse_score("score: 6, reason: decent") == (6, "decent")


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "empty judge answer"),
        ("   \n", "empty judge answer"),
        ("I think it is quite good.", "no score found"),
        ('{"score": 0, "reason": "awful"}', r"not an integer in \[1, 10\]"),
        ('{"score": 11}', r"not an integer in \[1, 10\]"),
        ('{"score": 7.5}', "not an integer"),
        ('{"score": "high"}', "is not a number"),
        ('{"score": null}', "is not a number"),
        ("score: 42", r"not an integer in \[1, 10\]"),
    ],
)
def test_malformed_answers_raise(text, match):
    with pytest.raises(JudgeParseError, match=match):
        parse_score(text)


def test_custom_range():
    assert parse_score('{"score": 0}', low=0, high=5) == (0, "")
    with pytest.raises(JudgeParseError):
        parse_score('{"score": 6}', low=0, high=5)


# --------------------------------------------------------------------------- key-point labels and ratings


@pytest.mark.parametrize(
    "text, label, why",
    [
        ('{"label": "Supported", "justification": "It says so."}', "Supported", "It says so."),
        ('```json\n{"label": "Omitted", "justification": "Not covered."}\n```', "Omitted", "Not covered."),
        ('{"Label": "CONTRADICTED", "Justification": "Opposite."}', "Contradicted", "Opposite."),
        ('Sure! {"label": "omitted", "justification": "absent"} Hope this helps.', "Omitted", "absent"),
        ('{"label": "Supported", "justification": "The report explains', "Supported", "The report explains"),
        ("{'label': 'Supports', 'justification': 'yes'}", "Supported", "yes"),
        ("Label: Omitted\nJustification: never mentioned", "Omitted", "never mentioned"),
        ("**Contradicted**\nThe report claims the opposite.", "Contradicted", "The report claims the opposite."),
        ("Supported.", "Supported", ""),
        ('{"verdict": 1}\n{"label": "contradicts", "reason": "r"}', "Contradicted", "r"),
    ],
)
def test_parse_keypoint_label_accepts_malformed_answers(text, label, why):
    assert parse_keypoint_label(text) == (label, why)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "I am not sure about this one.",
        "The report supports the key point in general.",  # prose, no label field or label line
        '{"label": "Partially supported", "justification": "half"}',
        '{"label": "Maybe"}',
        "label: unclear",
    ],
)
def test_parse_keypoint_label_rejects(text):
    with pytest.raises(KeypointParseError):
        parse_keypoint_label(text)
    assert issubclass(KeypointParseError, JudgeParseError)  # the judge's retry loop catches it


@pytest.mark.parametrize(
    "text, rating",
    [('{"rating": 7, "justification": "ok"}', 7), ('```json\n{"rating": "0", "justification": "x"}\n```', 0),
     ("Rating: 10\nJustification: superb", 10), ('{"score": 4.0}', 4)],
)
def test_parse_rating(text, rating):
    assert parse_rating(text)[0] == rating


@pytest.mark.parametrize("text", ["", '{"rating": 11}', '{"rating": 6.5}', "rating: none", "no number here"])
def test_parse_rating_rejects(text):
    with pytest.raises(JudgeParseError):
        parse_rating(text)
