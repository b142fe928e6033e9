"""The rubric judge as a reward: the adapter to ``judge_fn(prompts, texts, rubrics) -> list[float]``."""

from __future__ import annotations

from r2_write.judge.judge import RubricJudge, mean_score
from r2_write.rubrics.schema import generic_rubric
from r2_write.rubrics.table import criteria_of


def judge_score_fn(judge: RubricJudge, generic: list[dict]):
    """Adapt the rubric judge to the reward contract ``judge_fn(prompts, texts, rubrics) -> list[float]``.

    ``rubrics`` entries are criteria JSON strings (or None: the generic rubric). A text the
    judge could not score on any criterion gets the mean of the scored texts of the same
    call (never 0); such failures are counted in ``judge.stats``.
    """
    fallback = generic_rubric(generic)

    def judge_fn(prompts: list[str], texts: list[str], rubrics: list) -> list[float]:
        crits = [criteria_of(r) if isinstance(r, str) else (r or fallback) for r in rubrics]
        means = [mean_score(v) for v in judge.score_responses(list(prompts), list(texts), crits)]
        scored = [m for m in means if m is not None]
        default = sum(scored) / len(scored) if scored else 5.5
        return [default if m is None else m for m in means]

    return judge_fn
