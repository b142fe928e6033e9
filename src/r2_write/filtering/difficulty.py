"""Difficulty-based filtering: keep prompts that are neither trivially easy nor hopeless.

Each prompt has ``k`` sampled responses scored by the rubric judge. A prompt is kept when
its mean score lies in ``[low, high]`` and the scores spread by at least ``min_spread``
(standard deviation): only such prompts give the RL policy a learning signal.
"""

from __future__ import annotations

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator


class FilterConfig(BaseModel):
    """The keep rule."""

    model_config = ConfigDict(extra="forbid")

    low: float = Field(3.0, ge=1, le=10, description="Drop prompts whose mean score is below this (too hard).")
    high: float = Field(8.0, ge=1, le=10, description="Drop prompts whose mean score is above this (too easy).")
    min_spread: float = Field(0.0, ge=0, description="Drop prompts whose score std is below this (no signal).")
    min_scored: int = Field(2, ge=1, description="Scored samples needed to judge a prompt at all.")

    @model_validator(mode="after")
    def _band(self) -> "FilterConfig":
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        return self


def difficulty_stats(samples: pd.DataFrame) -> pd.DataFrame:
    """Per-prompt statistics of the sampled responses' scores.

    Args:
        samples: Columns ``id``, ``sample``, ``score`` (NaN when the judge failed).

    Returns:
        One row per id: ``n_samples, n_scored, mean_score, std_score, min_score, max_score``.

    >>> df = pd.DataFrame({"id": ["a", "a"], "sample": [0, 1], "score": [4.0, 6.0]})
    >>> difficulty_stats(df)[["mean_score", "std_score"]].values.tolist()
    [[5.0, 1.0]]
    """
    g = samples.groupby("id", sort=False)["score"]
    return pd.DataFrame(
        {
            "n_samples": g.size(),
            "n_scored": g.count(),
            "mean_score": g.mean(),
            "std_score": g.std(ddof=0),
            "min_score": g.min(),
            "max_score": g.max(),
        }
    ).reset_index()


def apply_filter(stats: pd.DataFrame, cfg: FilterConfig) -> pd.DataFrame:
    """Add ``kept`` and ``reason`` (kept, too_hard, too_easy, low_spread, unscored).

    The first failing rule is the reason, checked in that order after ``unscored``.
    """
    def reason(r) -> str:
        if r.n_scored < cfg.min_scored:
            return "unscored"
        if r.mean_score < cfg.low:
            return "too_hard"
        if r.mean_score > cfg.high:
            return "too_easy"
        if r.std_score < cfg.min_spread:
            return "low_spread"
        return "kept"

    out = stats.copy()
    out["reason"] = [reason(r) for r in out.itertuples()] if len(out) else pd.Series(dtype=str)
    out["kept"] = out["reason"] == "kept"
    return out
