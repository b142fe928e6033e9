"""The over-optimisation monitor: the reward judge against an independent judge on held-out prompts.

Reward hacking shows as the training reward rising while an independent judge's score does
not. Every ``monitor.every`` training steps, PPO (:func:`r2_write.rl.trainer.train`) and GRPO
(:func:`r2_write.training.grpo.train_grpo`) sample one answer per prompt of a fixed held-out set
of ``monitor.prompts`` RL prompts (taken out of the training prompts, so never trained on) and
score the answers with two judges on the prompts' rubrics:

* ``monitor/reward_score``: the reward judge (``llm.reward_judge``, else ``llm.judge``), the one
  the policy is optimised against;
* ``monitor/eval_score``: the evaluation judge (``llm.eval_judge``; a different model in conf/paper);
* ``monitor/gap``: ``reward_score - eval_score`` (1-10 points).

A gap that grows over training means the policy learns what pleases the reward judge and not
what the evaluator sees. Each judge scores the final answer (the text after ``</think>``, the
whole text when there is none, as WritingBench cuts reasoning models' output); a text a judge
cannot score gets the minimum (1), as in the reward. See docs/monitor.md.

>>> MonitorParams().every, MonitorParams(every=5, prompts=16).enabled
(0, True)
>>> held_out_indices(10, 3)
[0, 6, 9]
>>> monitor_metrics({"n": 2.0, "eval": 9.0, "reward": 13.0})
{'monitor/eval_score': 4.5, 'monitor/reward_score': 6.5, 'monitor/gap': 2.0}
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from r2_write.trajectory import split_thinking

JudgeFn = Callable[[list[str], list[str], list[Any]], list[float]]

HELD_OUT_SEED = 0
"""The held-out set depends only on the number of prompts and ``monitor.prompts`` (the same for
every training seed and variant, so their curves are comparable)."""

SAMPLING_SEED = 1234
"""Every measurement samples the held-out answers from this seed (common random numbers): two
measurements differ because the policy changed, not because the draws did."""


class MonitorParams(BaseModel):
    """``<stage>.monitor`` (``ppo.monitor``, ``grpo.monitor``): the over-optimisation monitor."""

    model_config = ConfigDict(extra="forbid", strict=True)

    every: int = Field(0, ge=0, description="Measure every N training steps; 0 = off.")
    prompts: int = Field(8, ge=1, description="Held-out RL prompts, taken out of the training prompts.")

    @property
    def enabled(self) -> bool:
        return self.every > 0

    def due(self, step: int) -> bool:
        """Whether the monitor measures after training step ``step`` (1-based)."""
        return self.enabled and step % self.every == 0


@dataclass
class MonitorJudges:
    """The two judges of the monitor, each ``judge_fn(prompts, texts, rubrics) -> list[float]`` (1-10)."""

    reward: JudgeFn
    eval: JudgeFn


def held_out_indices(n_prompts: int, k: int) -> list[int]:
    """The indices of the ``k`` held-out prompts among ``n_prompts`` (sorted; fixed by :data:`HELD_OUT_SEED`)."""
    return sorted(random.Random(HELD_OUT_SEED).sample(range(n_prompts), k))


def split_prompts(
    prompts: Sequence[str], rubrics: Sequence[Any] | None, params: MonitorParams, where: str = "monitor"
) -> tuple[list[str], list[Any] | None, list[str], list[Any]]:
    """``(train_prompts, train_rubrics, held_prompts, held_rubrics)``: the held-out set taken out of training.

    With the monitor off, every prompt trains and the held-out set is empty.
    """
    prompts = list(prompts)
    rubrics = list(rubrics) if rubrics is not None else None
    if not params.enabled:
        return prompts, rubrics, [], []
    if params.prompts >= len(prompts):
        raise ValueError(f"{where}.prompts={params.prompts} held-out prompts leave none of the {len(prompts)} RL "
                         f"prompts for training: lower {where}.prompts or set {where}.every: 0")
    held = set(held_out_indices(len(prompts), params.prompts))
    keep = [i for i in range(len(prompts)) if i not in held]
    held_rubrics = [rubrics[i] for i in sorted(held)] if rubrics is not None else [None] * len(held)
    return ([prompts[i] for i in keep], [rubrics[i] for i in keep] if rubrics is not None else None,
            [prompts[i] for i in sorted(held)], held_rubrics)


@contextmanager
def fixed_sampling_seed(device) -> Iterator[None]:
    """Sample under :data:`SAMPLING_SEED` and give the training's random state back afterwards (torch's
    CPU generator and ``device``'s, when it is a GPU): the monitor never changes what training draws."""
    import torch

    with torch.random.fork_rng(devices=[device] if getattr(device, "type", "cpu") == "cuda" else []):
        torch.manual_seed(SAMPLING_SEED)
        yield


def score_answers(judges: MonitorJudges, prompts: list[str], completions: list[str], rubrics: list[Any]) -> dict[str, float]:
    """Sums over the answers (to add over processes before dividing): ``n``, ``eval``, ``reward`` scores."""
    if not prompts:
        return {"n": 0.0, "eval": 0.0, "reward": 0.0}
    answers = [split_thinking(c)[1] for c in completions]
    reward = judges.reward(list(prompts), answers, list(rubrics))
    evaluated = judges.eval(list(prompts), answers, list(rubrics))
    return {"n": float(len(answers)), "eval": float(sum(evaluated)), "reward": float(sum(reward))}


def monitor_metrics(sums: dict[str, float]) -> dict[str, float]:
    """The logged metrics from :func:`score_answers`' sums (over every process)."""
    n = sums["n"]
    eval_score, reward_score = sums["eval"] / n, sums["reward"] / n
    return {"monitor/eval_score": eval_score, "monitor/reward_score": reward_score,
            "monitor/gap": reward_score - eval_score}


def monitor_judges(llm: dict, judge: dict, generic_rubric: list[dict]) -> MonitorJudges:
    """The monitor's judges from ``params:llm`` / ``params:judge``: the reward judge and ``eval_judge``
    (:mod:`r2_write.roles`), each a fresh judge, so the monitor's failures never count in the reward's budget."""
    from r2_write.judge.reward import judge_score_fn
    from r2_write.roles import judge_for

    return MonitorJudges(reward=judge_score_fn(judge_for(llm, judge, "reward_judge"), generic_rubric),
                         eval=judge_score_fn(judge_for(llm, judge, "eval_judge"), generic_rubric))


def judges_from_reward_spec(spec: dict | None) -> MonitorJudges | None:
    """The monitor's judges from a training's reward spec (:func:`r2_write.rewards.spec.reward_spec`), or None
    when the spec is not the rubric judge's (a launched process builds them from the same parameters)."""
    kwargs = (spec or {}).get("kwargs") or {}
    if not {"llm", "judge", "generic_rubric"} <= set(kwargs):
        return None
    return monitor_judges(kwargs["llm"], kwargs["judge"], kwargs["generic_rubric"])
