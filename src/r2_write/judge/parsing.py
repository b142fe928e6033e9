"""Robust parsing of judge answers: JSON, fenced JSON, or a recognisable score line."""

from __future__ import annotations

import json
import re


class JudgeParseError(ValueError):
    """The judge's answer holds no usable score."""


_OBJ_RE = re.compile(r"\{.*?\}", re.S)
_SCORE_RE = re.compile(r'["\']?score["\']?\s*[:=]\s*["\']?(\d+(?:\.\d+)?)', re.I)
_REASON_RE = re.compile(r'["\']?reason["\']?\s*[:=]\s*["\']?(.+?)["\']?\s*[,}]?\s*$', re.I | re.S)


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
    if not text or not text.strip():
        raise JudgeParseError("empty judge answer")
    for m in _OBJ_RE.finditer(text):
        try:
            obj = json.loads(m.group(0))
        except (ValueError, RecursionError):  # JSONDecodeError, huge ints, deep nesting
            continue
        if isinstance(obj, dict) and "score" in obj:
            return _check(obj["score"], low, high), str(obj.get("reason", obj.get("justification", ""))).strip()
    m = _SCORE_RE.search(text)
    if m:
        reason = _REASON_RE.search(text[m.end() :])
        return _check(m.group(1), low, high), (reason.group(1).strip() if reason else text.strip()[:300])
    raise JudgeParseError(f"no score found in judge answer: {text.strip()[:80]!r}")


def _check(value, low: int, high: int) -> int:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise JudgeParseError(f"score {value!r} is not a number") from None
    if not f.is_integer() or not low <= f <= high:
        raise JudgeParseError(f"score {value!r} is not an integer in [{low}, {high}]")
    return int(f)

