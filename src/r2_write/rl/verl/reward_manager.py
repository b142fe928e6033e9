"""The project's reward manager for veRL 0.9.1 (runs in veRL's reward-loop Ray workers, veRL environment).

veRL loads it from the overrides ``reward.reward_manager.source=importlib``,
``module.path=pkg://r2_write.rl.verl.reward_manager``, ``name=ProcessRewardManager``.

* :meth:`ProcessRewardManager.run_single` decodes one response, parses and judges it with the
  project's process reward (the ``reward_judge`` role through the project's client: response
  cache, retries, failure budget) and returns the tokens that carry a reward and their values
  (:func:`r2_write.rl.verl.rewards.score_sample`), plus per-sample numbers for the metrics.
  After each sample the judge role's failure budget is checked over the worker's judgements
  (:meth:`r2_write.judge.reward.JudgeScoreFn.check_budget`): a judge that fails too often
  stops the run with one line.
* :meth:`ProcessRewardManager.assemble_rm_scores` writes them into ``rm_scores`` at those
  positions, instead of veRL's one score on the last valid token. veRL calls it on its
  non-streaming reward path (``RewardLoopManager.compute_rm_score``), which
  :class:`r2_write.rl.verl.main.ProcessRewardTrainer` selects; ``rm_scores`` then becomes
  ``token_level_scores`` before the KL penalty and GAE.

A sample of the over-optimisation monitor's held-out prompts (``data_source``
:data:`~r2_write.rl.verl.dataset.MONITOR_SOURCE`, veRL's validation set) is not trained on:
:meth:`ProcessRewardManager.run_single` scores its final answer with the monitor's two judges
(:func:`r2_write.rl.monitor.judges_from_reward_spec` on the run's reward spec: the reward judge and
``eval_judge``, fresh judges whose failures never count in the reward's budget) and returns no
token reward, and ``monitor_reward_score`` / ``monitor_eval_score`` / ``monitor_gap`` per sample.
veRL's ``_validate`` averages them per data source (``val-aux/r2_write_monitor/<key>/mean@1``) and
:data:`r2_write.rl.verl.rewards.METRIC_MAP` names them ``monitor/*`` as in the own loop.

On veRL's streaming path (agent loop, no reward model) a dict score cannot be written as the
last-token scalar: that path fails instead of training on a wrong reward.

The run's settings come from the JSON file named by ``R2_VERL_SPEC`` (written by
:mod:`r2_write.rl.verl.launch`): the reward judge spec, the reward settings, lambda and the end tokens.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch

from verl import DataProto
from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase

from r2_write.rewards.process import ProcessRewardConfig
from r2_write.rewards.spec import build_reward
from r2_write.rl.monitor import judges_from_reward_spec
from r2_write.rl.verl.dataset import MONITOR_SOURCE
from r2_write.rl.verl.rewards import monitor_sample, place_scores, score_sample

SPEC_ENV = "R2_VERL_SPEC"


def load_spec(path: str | None = None) -> dict:
    """The run's reward settings (``R2_VERL_SPEC``); fails with one line when the variable or file is missing."""
    path = path or os.environ.get(SPEC_ENV)
    if not path or not os.path.exists(path):
        raise RuntimeError(f"{SPEC_ENV} must name the run's reward spec (written by r2_write.rl.verl.launch); "
                           f"got {path!r}")
    with open(path) as f:
        return json.load(f)


class ProcessRewardManager(RewardManagerBase):
    """The R2-Write token-level process reward as a veRL reward manager."""

    def __init__(self, config, tokenizer, compute_score=None, reward_router_address=None, reward_model_tokenizer=None,
                 spec: dict | None = None, reward_fn=None, judge=None, monitor_judges=None, **kwargs):
        super().__init__(config, tokenizer, compute_score)
        spec = spec or load_spec()
        self.reward_spec = spec["reward"]
        self._monitor_judges = monitor_judges  # built on the first held-out answer (validation only)
        self.reward_cfg = ProcessRewardConfig(**spec["reward_config"])
        self.process_weight = float(spec["process_weight"])
        self.eos_ids = [int(i) for i in spec["eos_ids"]]
        self.judge = judge
        if reward_fn is None:
            reward_fn, self.judge = build_reward(spec["reward"], self.reward_cfg)
        self.reward_fn = reward_fn

    async def run_single(self, data: DataProto) -> dict:
        item = data[-1]
        responses = item.batch["responses"]
        valid = int(item.batch["attention_mask"][-responses.shape[-1]:].sum())
        ids = responses[:valid].tolist()
        extra_info = item.non_tensor_batch.get("extra_info", {}) or {}
        prompt, rubric = extra_info["prompt_text"], _rubric(extra_info.get("criteria"))
        if item.non_tensor_batch.get("data_source") == MONITOR_SOURCE:  # a held-out answer: both judges, no reward
            judges = self.monitor_judges()
            extra = await self.loop.run_in_executor(
                None, lambda: monitor_sample(self.tokenizer, ids, self.eos_ids, prompt, rubric, judges))
            return {"reward_score": {"positions": [], "values": []}, "reward_extra_info": extra}
        sample = await self.loop.run_in_executor(
            None, lambda: score_sample(self.tokenizer, ids, self.eos_ids, prompt, rubric, self.reward_fn,
                                       self.reward_cfg, self.process_weight)
        )
        self.check_judge_budget()
        return {"reward_score": {"positions": sample["positions"], "values": sample["values"]},
                "reward_extra_info": sample["extra"]}

    def monitor_judges(self):
        """The over-optimisation monitor's judges from the run's reward spec (built once per worker)."""
        if self._monitor_judges is None:
            self._monitor_judges = judges_from_reward_spec(self.reward_spec)
            if self._monitor_judges is None:
                raise RuntimeError("ppo.monitor: the run's reward spec is not the rubric judge's (no llm/judge/"
                                   "generic_rubric kwargs), so the monitor's judges cannot be built")
        return self._monitor_judges

    def check_judge_budget(self) -> None:
        """The judge role's failure budget over this worker's judgements so far (one line, FailureBudgetError)."""
        check = getattr(self.judge, "check_budget", None)
        if check is not None:
            check(self.judge.counts())

    @classmethod
    def assemble_rm_scores(cls, data: DataProto, scores: list[Any]) -> torch.Tensor:
        """``rm_scores`` with each sample's rewards at its own token positions (not one scalar on the last token)."""
        return place_scores(data.batch["responses"], scores)


def _rubric(criteria: Any) -> Any:
    if isinstance(criteria, str):
        return json.loads(criteria) if criteria else None
    return criteria
