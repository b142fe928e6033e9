"""Rubric scoring and dataset building: score final answers, build disjoint SFT and RL sets."""

from __future__ import annotations

import json
import logging

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from r2_write.config import parse_params
from r2_write.data_io import DataOverlapError, check_disjoint
from r2_write.judge.judge import mean_score
from r2_write.llm.budget import check_judge
from r2_write.rewards.process import ProcessRewardConfig, last_useful_version
from r2_write.roles import judge_for
from r2_write.rubrics.table import criteria_of
from r2_write.tracking import mlflow_metrics
from r2_write.trajectory import parse, render

logger = logging.getLogger(__name__)


class ScoringParams(BaseModel):
    """``params:scoring``."""

    model_config = ConfigDict(extra="forbid")

    min_final_score: float = Field(6.0, ge=1, le=10, description="SFT keeps trajectories whose final answer scores at least this.")
    require_improvement: bool = Field(True, description="SFT keeps only trajectories whose revisions beat the first draft.")
    min_improvement: float = Field(0.0, ge=0, description="How much the final answer must beat the first draft by.")


def trim_redundant_steps(trajectories: pd.DataFrame, reward: dict) -> tuple[pd.DataFrame, dict]:
    """Cut each trajectory after its last useful version, so SFT never teaches a redundant step.

    Synthesis appends a reflection/revision before judging it and stops when it did not help,
    so an early-stopped trajectory ends in a step the process reward penalises. Trailing steps
    that do not beat the last credited version by more than ``ppo.reward.min_gain``
    (:func:`r2_write.rewards.process.last_useful_version`) are dropped; the last kept version
    becomes the answer. ``synthesis.steps`` keeps every step for analysis.

    Args:
        trajectories: ``synthesis.trajectories`` (``trajectory``, ``version_scores``, ...).
        reward: ``params:ppo.reward`` (the process reward's settings).

    Returns:
        (trajectories with the cut applied and a ``steps_cut`` column, metrics).
    """
    cfg = parse_params(ProcessRewardConfig, reward, "ppo.reward")
    cols = ["trajectory", "final_answer", "final_score", "n_steps", "steps_cut"]
    rows = []
    for r in trajectories.itertuples():
        scores = [None if pd.isna(x) else float(x) for x in r.version_scores]
        keep = last_useful_version(scores, cfg) if scores and scores[0] is not None else 0
        cut = parse(r.trajectory).up_to_version(keep)
        rows.append((render(cut), cut.answer, scores[keep] if scores else None, keep, r.n_steps - keep))
    out = trajectories.copy()
    out[cols] = pd.DataFrame(rows, columns=cols, index=trajectories.index).astype({"final_score": float})
    steps_cut, trimmed = int(out["steps_cut"].sum()), int((out["steps_cut"] > 0).sum())
    logger.info("trimmed %d trailing redundant steps from %d of %d trajectories", steps_cut, trimmed, len(out))
    return out, mlflow_metrics({"scoring/steps_cut": float(steps_cut), "scoring/trajectories_trimmed": float(trimmed)})


def score_final_answers(trajectories: pd.DataFrame, llm: dict, judge: dict) -> tuple[pd.DataFrame, dict]:
    """Score every trajectory's final answer on each criterion of its rubric.

    Args:
        trajectories: ``synthesis.trajectories``.
        llm: ``params:llm`` (the ``judge`` role).
        judge: ``params:judge``.

    Returns:
        (trajectories with ``criterion_scores`` JSON and ``answer_score`` — NaN if unscored —, metrics).
    """
    judge_ = judge_for(llm, judge)
    verdicts = judge_.score_responses(
        list(trajectories["prompt"]), list(trajectories["final_answer"]), [criteria_of(c) for c in trajectories["criteria"]]
    )
    out = trajectories.copy()
    out["criterion_scores"] = [json.dumps([v.score for v in vs]) for vs in verdicts]
    out["answer_score"] = [float("nan") if mean_score(vs) is None else mean_score(vs) for vs in verdicts]
    check_judge(judge_, "judged criteria unscored")
    return out, mlflow_metrics(judge_.stats.as_metrics("scoring/judge"))


def build_sft_set(scored: pd.DataFrame, params: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep trajectories whose final answer passes the threshold and improved on the first draft.

    Args:
        scored: Output of :func:`score_final_answers`.
        params: ``params:scoring``.

    Returns:
        (sft_set with ``prompt`` and ``completion`` (the trajectory), rejected with ``reason``).
    """
    cfg = parse_params(ScoringParams, params, "scoring")

    def reason(r) -> str:
        if pd.isna(r.answer_score):
            return "unscored"
        if r.answer_score < cfg.min_final_score:
            return "below_threshold"
        if cfg.require_improvement and (pd.isna(r.first_score) or r.final_score - r.first_score <= cfg.min_improvement):
            return "no_improvement"
        return "kept"

    table = scored.assign(reason=[reason(r) for r in scored.itertuples()] if len(scored) else [])
    cols = ["id", "domain", "language", "prompt", "trajectory", "final_answer", "criteria", "first_score", "final_score", "answer_score", "n_steps", "steps_cut"]
    if "steps_cut" not in table:
        table = table.assign(steps_cut=0)
    kept = table[table["reason"] == "kept"][cols].rename(columns={"trajectory": "completion"}).reset_index(drop=True)
    rejected = table[table["reason"] != "kept"][["id", "domain", "reason", "first_score", "final_score", "answer_score"]].reset_index(drop=True)
    logger.info("SFT set: %d kept, %d rejected %s", len(kept), len(rejected), rejected["reason"].value_counts().to_dict())
    return kept, rejected


def build_rl_set(kept_prompts: pd.DataFrame) -> pd.DataFrame:
    """The RL prompt set: difficulty-filtered prompts with their rubrics.

    Args:
        kept_prompts: ``filtering.kept``.

    Returns:
        Columns id, domain, language, prompt, criteria, mean_score, std_score.
    """
    return kept_prompts[["id", "domain", "language", "prompt", "criteria", "mean_score", "std_score"]].reset_index(drop=True)


def check_dataset_disjointness(
    sft_set: pd.DataFrame, rl_set: pd.DataFrame, writingbench: pd.DataFrame, deepresearchgym: pd.DataFrame
) -> pd.DataFrame:
    """Fail loudly if the SFT set, the RL set and the evaluation sets share a prompt.

    SFT and RL must not share an id or a text; neither may share a text (normalised:
    case, punctuation, whitespace) with any evaluation query. The evaluation sets are
    checked as one ("evaluation", items named ``<set>:<id>``): they may overlap each other.

    Args:
        sft_set: SFT examples.
        rl_set: RL prompts.
        writingbench: WritingBench queries (every configured file: the subsets may share queries).
        deepresearchgym: DeepResearchGym queries.

    Returns:
        The table of checks made (set, size) when everything is disjoint.

    Raises:
        DataOverlapError: naming the two sets and example items.
    """
    shared_ids = set(sft_set["id"]) & set(rl_set["id"])
    if shared_ids:
        raise DataOverlapError(f"SFT and RL sets share prompt ids {sorted(shared_ids)[:5]}")
    evaluation = {  # evaluation sets may share queries among themselves (WritingBench subsets do)
        f"{name}:{i}": q
        for name, df in (("writingbench", writingbench), ("deepresearchgym", deepresearchgym))
        for i, q in zip(df["id"], df["query"])
    }
    sets = {"sft": dict(zip(sft_set["id"], sft_set["prompt"])), "rl": dict(zip(rl_set["id"], rl_set["prompt"])), "evaluation": evaluation}
    check_disjoint(sets)
    return pd.DataFrame({"set": list(sets), "size": [len(v) for v in sets.values()], "disjoint": True})


def summarize_datasets(sft_set: pd.DataFrame, sft_rejected: pd.DataFrame, rl_set: pd.DataFrame, rl_dropped: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Counts per set, domain and reason (a table and MLflow metrics).

    Args:
        sft_set: Kept SFT examples.
        sft_rejected: Rejected trajectories with ``reason``.
        rl_set: Kept RL prompts.
        rl_dropped: Prompts dropped by difficulty filtering with ``reason``.

    Returns:
        (summary table with columns set, domain, reason, count; metrics).
    """
    parts = [
        sft_set.assign(set="sft", reason="kept"), sft_rejected.assign(set="sft"),
        rl_set.assign(set="rl", reason="kept"), rl_dropped.assign(set="rl"),
    ]
    table = pd.concat([p[["set", "domain", "reason"]] for p in parts], ignore_index=True)
    summary = table.groupby(["set", "domain", "reason"]).size().rename("count").reset_index()
    metrics = {"datasets/sft_examples": float(len(sft_set)), "datasets/rl_prompts": float(len(rl_set)),
               "datasets/sft_steps_cut": float(sft_set["steps_cut"].sum()) if "steps_cut" in sft_set else 0.0}
    if "steps_cut" in sft_set and len(sft_set):  # trailing redundant steps cut from the kept examples, per domain
        cut = sft_set.groupby("domain")["steps_cut"].sum().rename("count").reset_index()
        summary = pd.concat([summary, cut.assign(set="sft", reason="redundant_steps_cut")[summary.columns]],
                            ignore_index=True)
    for (s, r), n in table.groupby(["set", "reason"]).size().items():
        metrics[f"datasets/{s}_{r}"] = float(n)
    for (s, d), n in table[table["reason"] == "kept"].groupby(["set", "domain"]).size().items():
        metrics[f"datasets/{s}_domain_{d.split(' ')[0].lower()}"] = float(n)
    return summary, mlflow_metrics(metrics)
