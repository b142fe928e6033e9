"""The rubric judge as a reward: the adapter to ``judge_fn(prompts, texts, rubrics) -> list[float]``.

**An unscored text earns the minimum score** (1 on the 1-10 scale). A text the judge could not
score on any of its criteria (every attempt malformed, or no probability mass) is a text the
policy may have written to break the judge, so it must never earn more than the worst text
the judge *did* score: imputing the batch mean (as this module did before) paid a
judge-breaking line appended to an answer judged 2 the mean of its batch. The minimum keeps
the text in the update (its advantage is computed as for any other) and makes breaking the
judge the worst outcome a well-formed completion can have. A text scored on some criteria
keeps the mean of those (a single flaky criterion does not zero an answer).

Unscored texts are counted (:meth:`JudgeScoreFn.counts`); the trainers log their number per
step as ``reward/unscored`` and check the judge's failure budget after every step
(:meth:`JudgeScoreFn.check_budget`), so a run whose judge fails too often stops within one
step with one line (:class:`~r2_write.llm.base.FailureBudgetError`).
"""

from __future__ import annotations

from r2_write.judge.judge import RubricJudge, mean_score
from r2_write.llm.budget import check_failure_budget
from r2_write.rubrics.schema import generic_rubric
from r2_write.rubrics.table import criteria_of

MIN_SCORE = 1.0
"""The score of a text the judge could not score: the bottom of the 1-10 scale."""

COUNTS = ("texts", "unscored", "items", "failed_items")
"""The cumulative counters of :meth:`JudgeScoreFn.counts` (texts and criteria items)."""


class JudgeScoreFn:
    """The rubric judge as ``judge_fn(prompts, texts, rubrics) -> list[float]``, with failure counters.

    ``rubrics`` entries are criteria JSON strings (or None: the generic rubric). Build it with
    :func:`judge_score_fn`.
    """

    def __init__(self, judge: RubricJudge, generic: list[dict]):
        self.judge = judge
        self.fallback = generic_rubric(generic)
        self.texts = 0
        self.unscored = 0
        self._warned_at = 0

    @property
    def stats(self):
        """The judge's own counters (criteria items, failures, errors)."""
        return self.judge.stats

    @property
    def client(self):
        """The judge's client (its role and ``max_failed_share``: :func:`r2_write.llm.budget.check_judge` reads it)."""
        return self.judge.client

    def __call__(self, prompts: list[str], texts: list[str], rubrics: list) -> list[float]:
        crits = [criteria_of(r) if isinstance(r, str) else (r or self.fallback) for r in rubrics]
        means = [mean_score(v) for v in self.judge.score_responses(list(prompts), list(texts), crits)]
        self.texts += len(means)
        self.unscored += sum(m is None for m in means)
        return [MIN_SCORE if m is None else m for m in means]

    def counts(self) -> dict[str, int]:
        """Cumulative counts of this process: judged ``texts``, ``unscored`` texts, criteria ``items``, ``failed_items``."""
        return {"texts": self.texts, "unscored": self.unscored, "items": self.judge.stats.items,
                "failed_items": self.judge.stats.failed_items}

    def check_budget(self, counts: dict[str, float]) -> str | None:
        """Raise :class:`~r2_write.llm.base.FailureBudgetError` (one line) when the failed share of
        ``counts`` (e.g. :meth:`counts` summed over a run's processes) exceeds the judge role's
        ``max_failed_share``; returns the warning line when something failed within it."""
        client = self.judge.client
        failed, total, max_share = int(counts["failed_items"]), int(counts["items"]), client.cfg.max_failed_share
        if failed == self._warned_at and not (total and failed / total > max_share):
            return None  # nothing new failed and within the budget: warned already (checked every step)
        self._warned_at = failed
        return check_failure_budget(client.role, max_share, failed, total, self.judge.stats.errors,
                                    "reward judgements unscored (scored 1, the minimum)")


def audit_of(judge) -> JudgeScoreFn | None:
    """``judge`` when it counts unscored texts (a :class:`JudgeScoreFn`, as reward factories return it), else None."""
    return judge if isinstance(judge, JudgeScoreFn) else None


def judge_score_fn(judge: RubricJudge, generic: list[dict]) -> JudgeScoreFn:
    """Adapt the rubric judge to the reward contract ``judge_fn(prompts, texts, rubrics) -> list[float]``.

    A text the judge could not score on any criterion gets :data:`MIN_SCORE` (1) and is counted
    (see the module docstring for why not the batch mean).
    """
    return JudgeScoreFn(judge, generic)
