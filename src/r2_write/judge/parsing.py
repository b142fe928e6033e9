"""Robust parsing of judge answers: JSON, fenced JSON, or a recognisable score / label line.

One parser per kind of item: :func:`parse_score` (rubric criterion, 1-10),
:func:`parse_keypoint_label` (DeepResearchGym key point: Supported / Omitted / Contradicted)
and :func:`parse_rating` (DeepResearchGym quality, 0-10). Each returns ``(value, reason)`` or
raises :class:`JudgeParseError`, which the judge's retry loop catches and counts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

from r2_write.prompts.report_judge import KEYPOINT_LABELS


class JudgeParseError(ValueError):
    """The judge's answer holds no usable score."""


class KeypointParseError(JudgeParseError):
    """The judge's answer holds no recognisable key-point label."""


_OBJ_RE = re.compile(r"\{.*?\}", re.S)
_SCORE_RE = re.compile(r'["\']?score["\']?\s*[:=]\s*["\']?(\d+(?:\.\d+)?)', re.I)
_REASON_RE = re.compile(r'["\']?reason["\']?\s*[:=]\s*["\']?(.+?)["\']?\s*[,}]?\s*$', re.I | re.S)
_RATING_FIELD_RE = re.compile(r"""["']?(?:rating|score)["']?\s*[:=]\s*["']?(\d+(?:\.\d+)?)""", re.I)
_LABEL_FIELD_RE = re.compile(r"""["']?label["']?\s*[:=]\s*["']?\s*([A-Za-z]+)""", re.I)
_JUSTIFICATION_RE = re.compile(
    r"""["']?(?:justification|reason|explanation)["']?\s*[:=]\s*["']?(.*?)["']?\s*\}?\s*$""", re.I | re.S
)
_LABEL_LINE_RE = re.compile(r"^[\s\W_]*(?:label\s*[:=]\s*)?[\"'*`]*([A-Za-z]+)[\"'*`.!]*\s*$", re.I)
_LABEL_WORDS = {
    "supported": "Supported", "supports": "Supported", "support": "Supported",
    "omitted": "Omitted", "omits": "Omitted", "omit": "Omitted", "omission": "Omitted",
    "contradicted": "Contradicted", "contradicts": "Contradicted", "contradict": "Contradicted",
    "contradiction": "Contradicted",
}


def _objects(text: str) -> Iterator[dict]:
    """The JSON objects found anywhere in ``text`` (also inside code fences), in order."""
    for m in _OBJ_RE.finditer(text):
        try:
            obj = json.loads(m.group(0))
        except (ValueError, RecursionError):  # JSONDecodeError, huge ints, deep nesting
            continue
        if isinstance(obj, dict):
            yield obj


def _require_text(text: str) -> None:
    if not text or not text.strip():
        raise JudgeParseError("empty judge answer")


def parse_score(text: str, low: int = 1, high: int = 10) -> tuple[int, str]:
    """Extract ``(score, reason)`` from a judge answer.

    Accepts a JSON object anywhere in the text (also inside code fences), ``"7"`` or
    ``7.0`` as the score, and falls back to a ``score: 7`` pattern. Raises
    :class:`JudgeParseError` when no integer score in ``[low, high]`` can be found.

    >>> parse_score('```json\\n{"score": 8, "reason": "clear"}\\n```')
    (8, 'clear')
    >>> parse_score('Score: 3/10 because it rambles')[0]
    3
    """
    _require_text(text)
    for obj in _objects(text):
        if "score" in obj:
            return _check(obj["score"], low, high), str(obj.get("reason", obj.get("justification", ""))).strip()
    m = _SCORE_RE.search(text)
    if m:
        reason = _REASON_RE.search(text[m.end() :])
        return _check(m.group(1), low, high), (reason.group(1).strip() if reason else text.strip()[:300])
    raise JudgeParseError(f"no score found in judge answer: {text.strip()[:80]!r}")


def parse_rating(text: str, low: int = 0, high: int = 10) -> tuple[int, str]:
    """Extract ``(rating, justification)`` (an integer in [low, high]) from a quality judge answer.

    >>> parse_rating('{"rating": 3, "justification": "No sources."}')
    (3, 'No sources.')
    """
    _require_text(text)
    value, why = None, ""
    for obj in _objects(text):
        fields = {str(k).lower(): v for k, v in obj.items()}
        if "rating" in fields or "score" in fields:
            value = fields.get("rating", fields.get("score"))
            why = str(fields.get("justification", fields.get("reason", ""))).strip()
            break
    if value is None:
        m = _RATING_FIELD_RE.search(text)
        if not m:
            raise JudgeParseError(f"no rating found in judge answer: {text.strip()[:80]!r}")
        value = m.group(1)
        j = _JUSTIFICATION_RE.search(text[m.end() :])
        why = j.group(1).strip() if j else ""
    return _check(value, low, high, "rating"), why


def _norm_label(word) -> str | None:
    return _LABEL_WORDS.get(str(word).strip().strip("\"'*`.").lower()) if word is not None else None


def parse_keypoint_label(text: str) -> tuple[str, str]:
    """Extract ``(label, justification)`` from a key-point judge answer.

    Accepts a JSON object anywhere in the text (also in code fences, with any key case),
    label case variants and verb forms ("supported", "SUPPORTS", "contradicts"), a
    ``label: X`` pattern in broken JSON, or a line holding only the label. Raises
    :class:`KeypointParseError` when none is found or the label is not one of
    Supported / Omitted / Contradicted: the caller retries and counts, never guesses.

    >>> parse_keypoint_label('```json\\n{"label": "supported", "justification": "Stated."}\\n```')
    ('Supported', 'Stated.')
    >>> parse_keypoint_label('Omitted\\nThe report never mentions cost.')
    ('Omitted', 'The report never mentions cost.')
    """
    if not text or not text.strip():
        raise KeypointParseError("empty judge answer")
    for obj in _objects(text):
        fields = {str(k).lower(): v for k, v in obj.items()}
        if "label" in fields:
            label = _norm_label(fields["label"])
            if label is None:
                raise KeypointParseError(f"unknown label {fields['label']!r}; expected one of {KEYPOINT_LABELS}")
            why = fields.get("justification", fields.get("reason", fields.get("explanation", "")))
            return label, str(why).strip()
    m = _LABEL_FIELD_RE.search(text)
    if m:
        label = _norm_label(m.group(1))
        if label is None:
            raise KeypointParseError(f"unknown label {m.group(1)!r}; expected one of {KEYPOINT_LABELS}")
        why = _JUSTIFICATION_RE.search(text[m.end() :])
        return label, (why.group(1).strip() if why else "")
    lines = text.strip().splitlines()
    for i, line in enumerate(lines):
        lm = _LABEL_LINE_RE.match(line)
        if lm and _norm_label(lm.group(1)):
            rest = "\n".join(lines[:i] + lines[i + 1 :]).strip()
            return _norm_label(lm.group(1)), rest  # type: ignore[return-value]
    raise KeypointParseError(f"no key-point label found in judge answer: {text.strip()[:80]!r}")


def _check(value, low: int, high: int, what: str = "score") -> int:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise JudgeParseError(f"{what} {value!r} is not a number") from None
    if not f.is_integer() or not low <= f <= high:
        raise JudgeParseError(f"{what} {value!r} is not an integer in [{low}, {high}]")
    return int(f)
