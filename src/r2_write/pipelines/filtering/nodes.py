"""Difficulty-filtering nodes: sample k policy responses per RL prompt, judge, keep the informative ones."""

from __future__ import annotations

import logging

import pandas as pd
from matplotlib.figure import Figure
from pydantic import BaseModel, ConfigDict, Field

from r2_write.config import parse_params
from r2_write.filtering import FilterConfig, apply_filter, difficulty_stats
from r2_write.judge.judge import mean_score
from r2_write.llm.budget import check_calls, check_judge
from r2_write.llm.config import SamplingParams
from r2_write.prompts.policy import policy_messages
from r2_write.roles import judge_for, policy_client
from r2_write.rubrics.table import attach_rubrics, criteria_of
from r2_write.tracking import mlflow_metrics
from r2_write.trajectory import split_thinking

logger = logging.getLogger(__name__)


class FilteringParams(BaseModel):
    """``params:filtering``."""

    model_config = ConfigDict(extra="forbid")

    num_prompts: int | None = Field(None, ge=1, description="Use only the first N prompts of the rl pool.")
    k: int = Field(4, ge=2, description="Responses sampled per prompt.")
    max_new_tokens: int = Field(256, ge=8, description="Length limit of a sampled response.")
    temperature: float = Field(1.0, ge=0, description="Sampling temperature.")
    seed: int = Field(0, description="Seed of the first sample (sample j uses seed + j).")
    rule: FilterConfig = Field(default_factory=FilterConfig)


def select_rl_prompts(prompts: pd.DataFrame, rubrics: pd.DataFrame, params: dict, generic_rubric: list[dict]) -> pd.DataFrame:
    """The ``rl`` pool prompts with their rubrics.

    Args:
        prompts: Validated prompts with a ``pool`` column.
        rubrics: Accepted instance rubrics.
        params: ``params:filtering``.
        generic_rubric: ``params:generic_rubric``.

    Returns:
        RL candidate prompts with ``criteria`` and ``rubric_source``.
    """
    cfg = parse_params(FilteringParams, params, "filtering")
    pool = prompts[prompts["pool"] == "rl"]
    return attach_rubrics(pool.head(cfg.num_prompts) if cfg.num_prompts else pool, rubrics, generic_rubric)


def sample_policy_responses(candidates: pd.DataFrame, policy_model: str, params: dict, llm: dict) -> pd.DataFrame:
    """Sample ``k`` responses per prompt from the policy to be trained.

    Args:
        candidates: Output of :func:`select_rl_prompts`.
        policy_model: Directory of the policy checkpoint (the base model by default).
        params: ``params:filtering``.
        llm: ``params:llm`` (the ``policy`` role).

    Returns:
        One row per (id, sample) with the response text, its answer part and token count.
    """
    cfg = parse_params(FilteringParams, params, "filtering")
    client = policy_client(llm, policy_model)
    before = client.stats.copy()
    convs = [policy_messages(p) for p in candidates["prompt"]]
    rows = []
    for j in range(cfg.k):
        sampling = SamplingParams(temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed + j)
        for pid, g in zip(candidates["id"], client.generate(convs, sampling)):
            rows.append({"id": pid, "sample": j, "response": g.text, "answer": split_thinking(g.text)[1],
                         "tokens": g.completion_tokens, "error": g.error})
    check_calls(client, before, "policy samples failed")
    return pd.DataFrame(rows, columns=["id", "sample", "response", "answer", "tokens", "error"])


def score_policy_samples(samples: pd.DataFrame, candidates: pd.DataFrame, llm: dict, judge: dict) -> tuple[pd.DataFrame, dict]:
    """Judge every sampled answer on its prompt's rubric (mean over criteria).

    Args:
        samples: Output of :func:`sample_policy_responses`.
        candidates: Prompts with rubrics.
        llm: ``params:llm``.
        judge: ``params:judge``.

    Returns:
        (samples with ``score`` — NaN when unscored, never 0 — and judge metrics).
    """
    judge_ = judge_for(llm, judge)
    meta = candidates.set_index("id")
    ok = samples[samples["error"].isna()]
    verdicts = judge_.score_responses(
        [meta.at[i, "prompt"] for i in ok["id"]], list(ok["answer"]), [criteria_of(meta.at[i, "criteria"]) for i in ok["id"]]
    )
    scored = samples.copy()
    scored["score"] = float("nan")
    scored.loc[ok.index, "score"] = [mean_score(v) if mean_score(v) is not None else float("nan") for v in verdicts]
    check_judge(judge_, "judged criteria unscored")
    metrics = {**judge_.stats.as_metrics("filtering/judge"), "filtering/failed_samples": float(samples["error"].notna().sum())}
    return scored, mlflow_metrics(metrics)


def filter_by_difficulty(scored: pd.DataFrame, candidates: pd.DataFrame, params: dict) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Keep prompts in the score band with enough spread; keep the dropped ones with the reason.

    Args:
        scored: Output of :func:`score_policy_samples`.
        candidates: Prompts with rubrics.
        params: ``params:filtering``.

    Returns:
        (kept, dropped, metrics): prompts with their statistics and ``reason``.
    """
    cfg = parse_params(FilteringParams, params, "filtering")
    stats = apply_filter(difficulty_stats(scored[["id", "sample", "score"]]), cfg.rule)
    table = candidates.merge(stats, on="id", how="left")
    kept, dropped = table[table["kept"]].reset_index(drop=True), table[~table["kept"]].reset_index(drop=True)
    counts = table["reason"].value_counts().to_dict()
    logger.info("difficulty filtering: %d kept, %d dropped %s", len(kept), len(dropped), counts)
    metrics = {"filtering/kept": float(len(kept)), "filtering/dropped": float(len(dropped)),
               **{f"filtering/reason_{k}": float(v) for k, v in counts.items()},
               "filtering/mean_score": float(table["mean_score"].mean())}
    return kept, dropped, mlflow_metrics(metrics)


def plot_difficulty_histogram(kept: pd.DataFrame, dropped: pd.DataFrame, params: dict) -> Figure:
    """Histogram of per-prompt mean scores, kept vs dropped, with the keep band.

    Args:
        kept: Kept prompts.
        dropped: Dropped prompts.
        params: ``params:filtering``.

    Returns:
        The figure (saved as a PNG and logged to MLflow).
    """
    cfg = parse_params(FilteringParams, params, "filtering")
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    bins = [1 + 0.5 * i for i in range(19)]
    ax.hist([kept["mean_score"].dropna(), dropped["mean_score"].dropna()], bins=bins, stacked=True, label=["kept", "dropped"])
    for x in (cfg.rule.low, cfg.rule.high):
        ax.axvline(x, color="k", linestyle="--", linewidth=1)
    ax.set(xlabel="mean judge score over k samples (1-10)", ylabel="prompts", title="Difficulty filtering")
    ax.legend()
    fig.tight_layout()
    return fig
