"""PPO nodes: train the policy with the token-level process reward (or outcome only)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from r2_write.config import ConfigError, parse_params
from r2_write.judge.reward import audit_of
from r2_write.llm.budget import check_judge
from r2_write.rewards.process import ProcessRewardConfig
from r2_write.rl.monitor import judges_from_reward_spec
from r2_write.rl.ppo_config import PPOConfig
from r2_write.rl.trainer import train
from r2_write.tracking import mlflow_metric_history
from r2_write.training.launch import launch_ppo, parse_launch
from r2_write.training.length_budget import check_length_budget
from r2_write.rewards.spec import build_reward, reward_spec
from r2_write.training.stage import Stage, rl_parts, train_stage

logger = logging.getLogger(__name__)


def ablation_params(ppo: dict, overrides: dict | None = None) -> dict:
    """``params:ppo_outcome``'s effective settings: ``params:ppo`` with lambda = 0.

    The outcome-only ablation must differ from PPO with the process reward in lambda alone, so
    it is derived here rather than copied in YAML: ``--params ppo.learning_rate=...`` changes
    both runs. ``overrides`` (``params:ppo_outcome``, empty by default) are deep-merged on top
    for settings a user names on purpose (e.g. ``ppo_outcome.seed``); lambda stays 0.

    >>> ablation_params({"process_weight": 0.5, "learning_rate": 1e-5, "reward": {"min_gain": 0.25}}, {"seed": 3})
    {'process_weight': 0.0, 'learning_rate': 1e-05, 'reward': {'min_gain': 0.25}, 'seed': 3}
    """
    overrides = dict(overrides or {})
    if overrides.get("process_weight", 0) != 0:
        raise ConfigError(f"invalid parameters:\n  parameter 'ppo_outcome.process_weight': the outcome-only ablation "
                          f"has lambda 0 (got {overrides['process_weight']!r}); set ppo.process_weight instead")
    return {**_deep_merge(ppo, overrides), "process_weight": 0.0}


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def train_ppo_outcome_policy(
    rl_set: pd.DataFrame, sft_set: pd.DataFrame, policy_model: str, ppo: dict, overrides: dict, llm: dict,
    judge: dict, generic_rubric: list[dict],
) -> tuple[str, pd.DataFrame, dict]:
    """The outcome-only ablation: :func:`train_ppo_policy` on :func:`ablation_params` (``params:ppo`` with lambda 0).

    Args:
        rl_set, sft_set, policy_model, llm, judge, generic_rubric: as for :func:`train_ppo_policy`.
        ppo: ``params:ppo``.
        overrides: ``params:ppo_outcome`` (settings that differ on purpose; usually empty).

    Returns:
        As :func:`train_ppo_policy`.
    """
    return train_ppo_policy(rl_set, sft_set, policy_model, ablation_params(ppo, overrides), llm, judge,
                            generic_rubric, variant="ppo_outcome")


def train_ppo_policy(
    rl_set: pd.DataFrame, sft_set: pd.DataFrame, policy_model: str, params: dict, llm: dict, judge: dict,
    generic_rubric: list[dict], variant: str = "ppo",
) -> tuple[str, pd.DataFrame, dict]:
    """PPO from the SFT checkpoint with reward = outcome + process_weight * step rewards.

    Args:
        rl_set: ``scoring.rl_set`` (prompt, criteria).
        sft_set: ``scoring.sft_set``: the policy learned its trajectories (``completion``), so
            ``max_new_tokens`` must fit them (checked unless ``check_length_budget: false``).
        policy_model: Directory of the starting policy (the SFT model); also the KL reference.
        params: ``params:ppo`` (PPOConfig fields plus ``reward``: ProcessRewardConfig fields, and
            ``launch``: train in ``accelerate launch`` processes, :mod:`r2_write.training.launch`);
            ``process_weight: 0`` is the outcome-only ablation.
        llm: ``params:llm`` (the ``judge`` role scores versions and answers).
        judge: ``params:judge``.
        generic_rubric: fallback rubric.
        variant: Name of this run (``ppo`` or ``ppo_outcome``), used for the nested MLflow run.

    Returns:
        (final model directory, per-step history table, metric histories for MLflow).
    """
    if rl_set.empty:
        raise ValueError("the RL set is empty: difficulty filtering kept no prompt; widen filtering.rule or add prompts")
    params = dict(params)
    launch = parse_launch(params.pop("launch", None), f"{variant}.launch")
    if "process_weight" in (params.get("reward") or {}):  # lambda has one home: ppo.process_weight
        raise ConfigError(f"invalid parameters:\n  parameter '{variant}.reward.process_weight': unknown field; "
                          f"lambda is set by '{variant}.process_weight'")
    reward_cfg = parse_params(ProcessRewardConfig, params.pop("reward", {}), f"{variant}.reward")
    cfg = parse_params(PPOConfig, params, variant)
    if problem := reward_cfg.weight_problem(cfg.process_weight):  # lambda meets the reward settings here
        raise ConfigError(f"invalid parameters:\n  parameter '{variant}.reward': {problem}")
    if cfg.engine == "verl":  # veRL's PPO in its own environment (r2_write.rl.verl.launch): fail now if it is missing
        from r2_write.rl.verl.launch import check_environment

        check_environment(cfg.verl.python)
        if launch is not None:
            logger.info("%s: engine verl places its own GPUs (%s.verl); %s.launch is not used", variant, variant, variant)
            launch = None
    if cfg.check_length_budget:
        check_length_budget(list(sft_set["completion"]), policy_model, cfg.max_new_tokens, variant)
    prompts, rubrics = list(rl_set["prompt"]), list(rl_set["criteria"])
    spec = reward_spec(llm, judge, generic_rubric)

    def in_process(output_dir: str, log) -> tuple[str, dict]:
        if cfg.engine == "verl":
            from r2_write.rl.verl.launch import train_verl

            return train_verl(policy_model, prompts, rubrics, cfg.model_copy(update={"output_dir": output_dir}),
                              reward_cfg, spec, variant)
        reward_fn, judge_ = build_reward(spec, reward_cfg)
        out = train(policy_model, prompts, reward_fn, cfg.model_copy(update={"output_dir": output_dir}), rubrics=rubrics,
                    log_fn=log, reward_cfg=reward_cfg, judge_audit=audit_of(judge_),
                    monitor_judges=judges_from_reward_spec(spec) if cfg.monitor.enabled else None)
        check_judge(judge_, "reward judgements unscored (scored 1, the minimum)")
        return out["final_dir"], {"history": out["history"], "judge_failed_items": judge_.stats.failed_items}

    def launched(launch_, output_dir: str) -> tuple[str, dict]:
        out = launch_ppo(launch_, policy_model, prompts, rubrics, cfg.model_copy(update={"output_dir": output_dir}),
                         reward_cfg, spec)
        return out["final_dir"], {"history": out["history"], "judge_failed_items": out["judge_failed_items"]}

    parts = {**rl_parts(cfg.model_dump(), launch, policy_model, prompts, rubrics, spec), "reward_cfg": reward_cfg.model_dump()}
    run = train_stage(Stage(variant, parts, in_process, launched, launch, params.get("output_dir"), cfg.reuse_trained,
                            log_params=params))
    history = pd.DataFrame(run.result["history"])
    history.insert(0, "variant", variant)
    curves = [{f"{variant}/{k}": v for k, v in row.items()} for row in run.result["history"]]
    if curves:
        curves[-1][f"{variant}/judge/failed_items"] = float(run.result["judge_failed_items"])
    return run.model_dir, history, mlflow_metric_history(curves)


MONITOR_COLUMNS = ("monitor/reward_score", "monitor/eval_score", "monitor/gap")


def plot_reward_and_length(history: pd.DataFrame) -> Figure:
    """Reward and response length over training steps (the paper: process reward cuts length ~20%), and
    the over-optimisation monitor beside them when it ran (:mod:`r2_write.rl.monitor`).

    The monitor panel draws, per variant, the reward judge's and ``eval_judge``'s mean score of the
    held-out answers (1-10) at the steps it measured, and their gap: a reward curve that rises while
    the gap grows is the reward judge being pleased without the writing improving.

    Args:
        history: Per-step history of one or more variants (column ``variant``; PPO or GRPO, whose
            metrics share these names).

    Returns:
        The figure (PNG artifact in MLflow).
    """
    monitored = all(c in history for c in MONITOR_COLUMNS) and history["monitor/gap"].notna().any()
    fig = Figure(figsize=(13.5 if monitored else 9, 3.5))
    axes = fig.subplots(1, 3 if monitored else 2)
    ax1, ax2 = axes[0], axes[1]
    for variant, h in history.groupby("variant"):
        steps = np.arange(1, len(h) + 1)
        ax1.plot(steps, h["reward/mean"], marker="o", label=variant)
        ax2.plot(steps, h["response/length_tokens"], marker="o", label=variant)
        if monitored:
            seen = h["monitor/gap"].notna().to_numpy()
            axes[2].plot(steps[seen], h["monitor/reward_score"][seen], marker="o", label=f"{variant} reward judge")
            axes[2].plot(steps[seen], h["monitor/eval_score"][seen], marker="s", linestyle="--",
                         label=f"{variant} eval judge")
            axes[2].plot(steps[seen], h["monitor/gap"][seen], marker="^", linestyle=":", label=f"{variant} gap")
    ax1.set(xlabel="step", ylabel="reward/mean", title="Reward")
    ax2.set(xlabel="step", ylabel="tokens", title="Response length")
    ax1.legend()
    if monitored:
        axes[2].axhline(0.0, color="grey", linewidth=0.5)
        axes[2].set(xlabel="step", ylabel="score (1-10) / gap", title="Held-out: reward judge vs eval judge")
        axes[2].legend(fontsize=7)
    fig.tight_layout()
    return fig
