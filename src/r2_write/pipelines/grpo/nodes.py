"""GRPO baseline nodes: sequence-level rubric reward with TRL's GRPOTrainer."""

from __future__ import annotations

import pandas as pd

from r2_write.config import parse_params
from r2_write.judge.reward import audit_of
from r2_write.llm.budget import check_judge
from r2_write.rl.monitor import judges_from_reward_spec
from r2_write.tracking import mlflow_metric_history
from r2_write.training.grpo import GRPOParams, train_grpo
from r2_write.training.launch import launch_grpo, parse_launch
from r2_write.rewards.spec import build_reward, reward_spec
from r2_write.training.stage import Stage, rl_parts, train_stage

# TRL log keys -> the metric names every RL variant shares
_SHARED_NAMES = {
    "reward": "reward/mean",
    "completions/mean_length": "response/length_tokens",
    "kl": "objective/kl",
    "entropy": "losses/entropy",
    "loss": "losses/policy_loss",
    "clip_ratio/region_mean": "losses/clipfrac",
    **{k: k for k in ("reward/unscored", "monitor/eval_score", "monitor/reward_score", "monitor/gap", "time/monitor")},
}


def train_grpo_policy(
    rl_set: pd.DataFrame, policy_model: str, params: dict, llm: dict, judge: dict, generic_rubric: list[dict]
) -> tuple[str, pd.DataFrame, dict]:
    """GRPO from the SFT checkpoint with the rubric judge's outcome score as reward.

    Args:
        rl_set: ``scoring.rl_set``.
        policy_model: Directory of the starting policy (the SFT model).
        params: ``params:grpo`` (``launch``: train in ``accelerate launch`` processes, each judging
            its share, :mod:`r2_write.training.launch`).
        llm: ``params:llm`` (the ``judge`` role).
        judge: ``params:judge``.
        generic_rubric: fallback rubric.

    Returns:
        (final model directory, per-step history, metric histories under the shared names).
    """
    params = dict(params or {})
    launch = parse_launch(params.pop("launch", None), "grpo.launch")
    cfg = parse_params(GRPOParams, params, "grpo")
    prompts, rubrics = list(rl_set["prompt"]), list(rl_set["criteria"])
    spec = reward_spec(llm, judge, generic_rubric, kind="outcome")

    def in_process(output_dir: str, _log) -> tuple[str, dict]:
        reward, judge_ = build_reward(spec)
        final_dir, logs = train_grpo(policy_model, prompts, rubrics, reward, cfg.model_copy(update={"output_dir": output_dir}),
                                     judge_audit=audit_of(judge_),
                                     monitor_judges=judges_from_reward_spec(spec) if cfg.monitor.enabled else None)
        check_judge(judge_, "reward judgements unscored (scored 1, the minimum)")
        return final_dir, {"logs": logs}

    def launched(launch_, output_dir: str) -> tuple[str, dict]:
        final_dir, logs, _ = launch_grpo(launch_, policy_model, prompts, rubrics,
                                         cfg.model_copy(update={"output_dir": output_dir}), spec)
        return final_dir, {"logs": logs}

    def rows(result: dict) -> list[dict]:
        return [{_SHARED_NAMES.get(k, f"grpo/{k}"): v for k, v in h.items() if isinstance(v, (int, float))}
                for h in result["logs"]]

    parts = rl_parts(cfg.model_dump(), launch, policy_model, prompts, rubrics, spec)
    run = train_stage(Stage("grpo", parts, in_process, launched, launch, cfg.output_dir, cfg.reuse_trained,
                            log_params=cfg.model_dump(), rows=rows))
    history = rows(run.result)
    return run.model_dir, pd.DataFrame(history).assign(variant="grpo"), mlflow_metric_history(
        [{f"grpo/{k}": v for k, v in r.items()} for r in history])
