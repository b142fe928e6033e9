"""The DeepResearchGym report judge: key-point labels and quality ratings.

Protocol of the official scorer (``eval_kpr_async.py`` and ``eval_quality_async.py`` of
cxcscmu/deepresearch_benchmarking): one judge call per (key point, report), labelled
Supported, Omitted or Contradicted; one per quality criterion, rated 0-10.

Both kinds of item go through the judges' one dispatch (:func:`r2_write.judge.judge.ask`):
``generate`` (JSON parsed by :func:`~r2_write.judge.parsing.parse_keypoint_label` /
:func:`~r2_write.judge.parsing.parse_rating`, malformed answers retried with a new seed,
failures counted) and ``probability`` (one forward pass: key-point label = argmax of the
next-token probabilities of the first token of each label after ``{"label": "`` (see
:meth:`ReportJudge.label_tokens`); rating = expected value over "0".."10" after
``{"rating": ``). An item the judge never answered validly is left unlabelled / unrated
(None) and counted; it is never silently given a label.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from r2_write.judge.judge import BaseJudge, Probe, expected_value
from r2_write.judge.parsing import parse_keypoint_label, parse_rating
from r2_write.prompts.report_judge import (
    KEYPOINT_LABELS,
    KEYPOINT_PREFIX,
    RATING_PREFIX,
    RATING_TOKENS,
    keypoint_messages,
    quality_messages,
)


@dataclass
class Verdict:
    """One judge answer: ``value`` is a label (key points) or a rating (quality); None if never valid."""

    value: str | float | None
    justification: str = ""
    attempts: int = 1
    error: str | None = None
    truncated: bool = False  # the report was cut at the judge's max_judged_chars


class ReportJudge(BaseJudge):
    """Labels key points and rates report quality with an :class:`~r2_write.llm.client.LLMClient`."""

    def label_key_points(self, items: list[tuple[str, str]]) -> list[Verdict]:
        """Label each ``(key_point, report)`` pair Supported / Omitted / Contradicted."""
        self.stats.items += len(items)
        convs = [keypoint_messages(kp, report, self.cfg.max_judged_chars) for kp, report in items]
        if not convs:
            return []
        tokens = self.label_tokens() if self.cfg.mode == "probability" else {}

        def read(i: int, raw: dict) -> tuple[str, str] | None:
            probs = {lab: raw[t] for t, lab in tokens.items()}
            mass = sum(probs.values())
            if mass <= 0 or math.isnan(mass):
                return None
            shown = ", ".join(f"p({lab})={probs[lab] / mass:.3f}" for lab in KEYPOINT_LABELS)
            return max(KEYPOINT_LABELS, key=lambda lab: probs[lab]), shown

        probe = Probe(list(tokens), KEYPOINT_PREFIX, read, "no probability mass on the labels")
        return [Verdict(*a) for a in self._ask(convs, [report for _, report in items], parse_keypoint_label, probe)]

    def label_tokens(self) -> dict[str, str]:
        """The candidate scored for each label in probability mode: ``{candidate: label}``.

        The first token of each label (one forward pass, no extra rows) when the backend
        exposes its tokenizer (``backend.tok``, the local transformers backend) and the
        first tokens differ; otherwise the whole label strings, which the backend scores
        as sequences.
        """
        tok = getattr(self.client.backend, "tok", None)
        if tok is not None:
            try:
                firsts = [tok.decode(tok.encode(lab, add_special_tokens=False)[:1]) for lab in KEYPOINT_LABELS]
            except Exception:  # noqa: BLE001 - any tokenizer trouble: score whole labels
                firsts = []
            if len(set(firsts)) == len(KEYPOINT_LABELS) and all(f.strip() for f in firsts):
                return dict(zip(firsts, KEYPOINT_LABELS))
        return {lab: lab for lab in KEYPOINT_LABELS}

    def rate_quality(self, items: list[tuple[str, str, str]]) -> list[Verdict]:
        """Rate each ``(criterion, query, report)`` 0-10."""
        self.stats.items += len(items)
        convs = [quality_messages(c, q, r, self.cfg.max_judged_chars) for c, q, r in items]
        if not convs:
            return []

        def read(i: int, probs: dict) -> tuple[float, str] | None:
            expected = expected_value(probs)
            return None if expected is None else (round(expected, 4), "expected rating")

        probe = Probe(RATING_TOKENS, RATING_PREFIX, read, "no probability mass on rating tokens")
        return [Verdict(*a) for a in self._ask(convs, [r for _, _, r in items], parse_rating, probe)]
