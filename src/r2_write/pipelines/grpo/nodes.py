"""GRPO baseline nodes: sequence-level rubric reward with TRL's GRPOTrainer."""

from __future__ import annotations

import pandas as pd

from r2_write.config import parse_params
from r2_write.judge.reward import judge_score_fn
from r2_write.llm.budget import check_judge
from r2_write.rewards.process import outcome_reward_fn
from r2_write.roles import judge_for
from r2_write.tracking import NestedRunLogger, mlflow_metric_history
from r2_write.training.grpo import GRPOParams, train_grpo
from r2_write.training.launch import judge_reward_spec, launch_grpo, parse_launch
from r2_write.training.reuse import reuse_or_train, rl_training_parts

# TRL log keys -> the metric names every RL variant shares
_SHARED_NAMES = {
    "reward": "reward/mean",
    "completions/mean_length": "response/length_tokens",
    "kl": "objective/kl",
    "entropy": "losses/entropy",
    "loss": "losses/policy_loss",
    "clip_ratio/region_mean": "losses/clipfrac",
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
    reward_spec = judge_reward_spec(llm, judge, generic_rubric, kind="outcome")

    def run() -> tuple[str, dict]:
        if launch is not None:
            final_dir, logs, _ = launch_grpo(launch, policy_model, prompts, rubrics, cfg, reward_spec)
        else:
            judge_ = judge_for(llm, judge)
            reward = outcome_reward_fn(judge_score_fn(judge_, generic_rubric))
            final_dir, logs = train_grpo(policy_model, prompts, rubrics, reward, cfg)
            check_judge(judge_, "reward judgements unscored (imputed with the batch mean)")
        return final_dir, {"logs": logs}

    parts = rl_training_parts(cfg.model_dump(), launch, policy_model, prompts, rubrics, reward_spec)
    final_dir, result, _ = reuse_or_train("grpo", parts, run, enabled=cfg.reuse_trained)
    logs = result["logs"]
    rows = [{_SHARED_NAMES.get(k, f"grpo/{k}"): v for k, v in h.items() if isinstance(v, (int, float))} for h in logs]
    with NestedRunLogger("grpo", cfg.model_dump()) as log:
        for step, row in enumerate(rows, start=1):
            log(row, step)
    history = pd.DataFrame(rows).assign(variant="grpo")
    return final_dir, history, mlflow_metric_history([{f"grpo/{k}": v for k, v in r.items()} for r in rows])
