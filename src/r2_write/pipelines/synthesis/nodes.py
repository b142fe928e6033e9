"""Synthesis nodes: writer-judge loop -> stitched trajectories with reflection steps."""

from __future__ import annotations

import logging

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from r2_write.config import parse_params
from r2_write.llm.budget import check_calls, check_judge
from r2_write.roles import client_for, judge_for
from r2_write.rubrics.table import attach_rubrics, criteria_of
from r2_write.synthesis import SynthesisConfig, synthesize
from r2_write.tracking import mlflow_metrics

logger = logging.getLogger(__name__)


class SynthesisParams(BaseModel):
    """``params:synthesis``."""

    model_config = ConfigDict(extra="forbid")

    num_prompts: int | None = Field(None, ge=1, description="Use only the first N prompts of the sft pool (None: all).")
    loop: SynthesisConfig = Field(default_factory=SynthesisConfig)


def select_synthesis_prompts(
    prompts: pd.DataFrame, rubrics: pd.DataFrame, params: dict, generic_rubric: list[dict]
) -> pd.DataFrame:
    """Pick the prompts to synthesize and attach each one's rubric.

    Args:
        prompts: Validated prompts (id, domain, language, prompt, pool); only the ``sft``
            pool is synthesized (the ``rl`` pool feeds difficulty filtering).
        rubrics: Instance rubrics (id, criteria as JSON); prompts without one get the
            configured generic rubric.
        params: ``params:synthesis``.
        generic_rubric: ``params:generic_rubric``, the fallback rubric.

    Returns:
        Prompts with a ``criteria`` JSON column and ``rubric_source`` (instance|generic).
    """
    cfg = parse_params(SynthesisParams, params, "synthesis")
    pool = prompts[prompts["pool"] == "sft"] if "pool" in prompts else prompts
    chosen = pool.head(cfg.num_prompts) if cfg.num_prompts else pool
    return attach_rubrics(chosen, rubrics, generic_rubric)


def synthesize_trajectories(
    inputs: pd.DataFrame, params: dict, llm: dict, judge: dict
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Run the writer-judge loop on every selected prompt.

    Args:
        inputs: Output of :func:`select_synthesis_prompts`.
        params: ``params:synthesis``.
        llm: ``params:llm`` (writer and judge model settings).
        judge: ``params:judge``.

    Returns:
        (trajectories, failures, metrics): one row per finished prompt; one row per prompt
        whose writer calls failed for good (with the last error); call/cache/judge metrics.
    """
    cfg = parse_params(SynthesisParams, params, "synthesis")
    writer, judge_ = client_for(llm, "writer"), judge_for(llm, judge)
    before_w, before_j = writer.stats.copy(), judge_.client.stats.copy()
    prompts = [
        {"id": r.id, "prompt": r.prompt, "criteria": criteria_of(r.criteria)}
        for r in inputs.itertuples()
    ]
    records = synthesize(prompts, writer, judge_, cfg.loop)
    check_calls(writer, before_w, "writer calls failed")  # too many failed for good: the node fails, in one line
    check_judge(judge_, "judged criteria unscored")  # a criterion never scored is a judge fallback
    meta = inputs.set_index("id")[["domain", "language", "prompt", "criteria", "rubric_source"]]
    done = pd.DataFrame([r for r in records if r["error"] is None])
    failed = pd.DataFrame([r for r in records if r["error"] is not None], columns=["id", "stop_reason", "error"])
    if len(done):
        done = done.drop(columns=["error"]).join(meta, on="id")
    metrics = {
        **writer.stats.since(before_w).as_metrics("synthesis/writer"),
        **judge_.stats.as_metrics("synthesis/judge"),
        "synthesis/prompts": float(len(records)),
        "synthesis/failed_prompts": float(len(failed)),
    }
    if judge_.client is not writer:
        metrics.update(judge_.client.stats.since(before_j).as_metrics("synthesis/judge_llm"))
    return done, failed, mlflow_metrics(metrics)


def extract_reflection_steps(trajectories: pd.DataFrame) -> pd.DataFrame:
    """One row per reflection->revision step with the judge score before and after.

    Args:
        trajectories: Output of :func:`synthesize_trajectories`.

    Returns:
        Columns id, domain, step, score_before, score_after, delta, effect
        (raised | lowered | unchanged | unscored).
    """
    rows = []
    for r in trajectories.itertuples():
        for k, (b, a) in enumerate(zip(r.score_before, r.score_after)):
            rows.append({"id": r.id, "domain": r.domain, "step": k + 1, "score_before": b, "score_after": a})
    steps = pd.DataFrame(rows, columns=["id", "domain", "step", "score_before", "score_after"])
    steps["delta"] = steps["score_after"] - steps["score_before"]
    steps["effect"] = steps["delta"].map(_effect)
    return steps


def _effect(delta: float, tol: float = 1e-6) -> str:
    if pd.isna(delta):
        return "unscored"
    return "raised" if delta > tol else "lowered" if delta < -tol else "unchanged"


def summarize_reflection_effects(steps: pd.DataFrame) -> dict:
    """Share of steps that raised / lowered / left the judge score (paper: >55% / ~10%).

    Args:
        steps: Output of :func:`extract_reflection_steps`.

    Returns:
        kedro-mlflow metrics.
    """
    n = len(steps)
    shares = {f"synthesis/steps_{e}_share": (steps["effect"] == e).mean() if n else float("nan") for e in ("raised", "lowered", "unchanged")}
    logger.info("reflection steps: %d; %s", n, {k: round(v, 3) for k, v in shares.items()})
    return mlflow_metrics({"synthesis/steps": float(n), **shares, "synthesis/mean_delta": steps["delta"].mean() if n else float("nan")})
