"""The reward of a training, as data: one spec, one builder, wherever the training runs.

A reward spec is JSON, ``{"function": "module:attr", "kwargs": {...}}``, so it travels to where
the reward is computed: the Kedro process (in-process training), every ``accelerate launch``
process (:mod:`r2_write.training.launch`) and veRL's reward workers
(:mod:`r2_write.rl.verl.reward_manager`). Each of them calls :func:`build_reward` on it and gets
the same reward: :func:`judge_reward` builds the rubric judge from ``params:llm`` /
``params:judge`` (:mod:`r2_write.roles`) and wraps its score function in the process reward
(PPO) or the outcome reward (GRPO). It is part of every training's identity
(:func:`r2_write.training.stage.rl_parts`).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

REWARD_KINDS = ("process", "outcome")


def reward_spec(llm: dict, judge: dict, generic_rubric: list[dict], kind: str = "process") -> dict:
    """The rubric judge's reward as JSON (``kind``: ``process`` for PPO, ``outcome`` for GRPO).

    ``{"function": "module:attr", "kwargs": {...}}``: :func:`build_reward` calls
    ``function(**kwargs)``, in the Kedro process or in a launched one.
    """
    if kind not in REWARD_KINDS:
        raise ValueError(f"unknown reward kind {kind!r}: one of {', '.join(REWARD_KINDS)}")
    return {"function": f"{__name__}:judge_reward",
            "kwargs": {"llm": llm, "judge": judge, "generic_rubric": generic_rubric, "kind": kind}}


def judge_reward(llm: dict, judge: dict, generic_rubric: list[dict], kind: str = "process", reward_cfg=None):
    """The rubric judge's reward: ``(reward_fn, judge)``.

    ``process``: :func:`~r2_write.rewards.process.process_reward_fn` (PPO; ``reward_cfg`` its
    settings); ``outcome``: :func:`~r2_write.rewards.process.outcome_reward_fn` (GRPO), both over
    :func:`r2_write.judge.reward.judge_score_fn` of :func:`r2_write.roles.judge_for`.
    """
    from r2_write.judge.reward import judge_score_fn
    from r2_write.rewards.process import outcome_reward_fn, process_reward_fn
    from r2_write.roles import judge_for

    judge_ = judge_for(llm, judge)
    score_fn = judge_score_fn(judge_, generic_rubric)
    if kind == "process":  # the score function as the judge: its stats, plus unscored counts and the budget check
        return process_reward_fn(score_fn, reward_cfg), score_fn
    if kind == "outcome":
        return outcome_reward_fn(score_fn), score_fn
    raise ValueError(f"unknown reward kind {kind!r}: one of {', '.join(REWARD_KINDS)}")


def build_reward(spec: dict, reward_cfg=None) -> tuple[Callable, Any]:
    """``(reward_fn, judge or None)`` from a spec; ``reward_cfg`` goes to factories that take it."""
    module, _, attr = spec["function"].partition(":")
    factory = getattr(importlib.import_module(module), attr)
    kwargs = dict(spec.get("kwargs", {}))
    if reward_cfg is not None and "reward_cfg" in inspect.signature(factory).parameters:
        kwargs["reward_cfg"] = reward_cfg
    built = factory(**kwargs)
    return built if isinstance(built, tuple) else (built, None)
