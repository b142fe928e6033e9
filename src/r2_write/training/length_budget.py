"""One length arithmetic for every trainer: the longest trajectory synthesis can write sizes SFT, PPO and GRPO.

The writer-judge loop (:class:`r2_write.synthesis.SynthesisConfig`) bounds each segment in
tokens, so the longest trajectory it can stitch is::

    response = plan + draft + max_rounds x (reflection + revision) + answer + markers
             = plan_tokens + draft_tokens + max_rounds x (reflection_tokens + draft_tokens)
               + draft_tokens + marker_tokens

(a revision and the final answer, a copy of the best version, are as long as a draft; the
markers ``<think>``, ``<plan>``..., the newlines between segments and the end token get a flat
``marker_tokens``). conf/paper (max_rounds 3, plan 1024, draft 4096, reflection 1024, markers
512): 1024 + 4096 + 3 x 5120 + 4096 + 512 = 25,088 tokens.

Every trainer then gets the same response budget:

- PPO (own loop): ``max_new_tokens = response``; the prompt is ``max_prompt_length`` (2,048).
- GRPO: ``max_completion_length = response`` (the baseline is cut where PPO is cut).
- SFT: ``max_length = max_prompt_length + response`` = 27,136: the chat-templated prompt and the
  whole trajectory with its answer, so no example the synthesis can write loses its answer
  (the SFT node drops and counts the rare longer ones, :func:`r2_write.training.sft.overlong_examples`).

``tests/test_config.py`` checks conf/paper against :func:`length_budget`. Before PPO trains,
:func:`check_length_budget` checks the configured budget against the trajectories the policy
actually learned (the SFT set, in the policy's tokens).

>>> from r2_write.synthesis import SynthesisConfig
>>> b = length_budget(SynthesisConfig(max_rounds=3, plan_tokens=1024, draft_tokens=4096, reflection_tokens=1024), 2048)
>>> b.response, b.ppo_max_new_tokens, b.grpo_max_completion_length, b.sft_max_length
(25088, 25088, 25088, 27136)
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from r2_write.config import ConfigError
from r2_write.llm.loading import load_tokenizer

logger = logging.getLogger(__name__)

MARKER_TOKENS = 512  # segment markers, the newlines between segments and the end token


@dataclass(frozen=True)
class LengthBudget:
    """Token budgets of the trainers, all from the longest trajectory (see the module docstring)."""

    prompt: int
    response: int

    @property
    def ppo_max_new_tokens(self) -> int:
        return self.response

    @property
    def grpo_max_completion_length(self) -> int:
        return self.response

    @property
    def sft_max_length(self) -> int:
        return self.prompt + self.response


def longest_trajectory(synthesis, marker_tokens: int = MARKER_TOKENS) -> int:
    """Tokens of the longest trajectory the writer-judge loop can write (``synthesis``: its ``SynthesisConfig``)."""
    s = synthesis
    return (s.plan_tokens + s.draft_tokens + s.max_rounds * (s.reflection_tokens + s.draft_tokens)
            + s.draft_tokens + marker_tokens)


def length_budget(synthesis, max_prompt_length: int, marker_tokens: int = MARKER_TOKENS) -> LengthBudget:
    """The budgets of SFT, PPO and GRPO for trajectories of ``synthesis`` and prompts of ``max_prompt_length`` tokens."""
    return LengthBudget(prompt=max_prompt_length, response=longest_trajectory(synthesis, marker_tokens))


def check_length_budget(completions: list[str], policy_model: str, max_new_tokens: int, variant: str) -> None:
    """Fail when ``max_new_tokens`` is shorter than the 95th percentile of the SFT trajectories.

    A trajectory's length is its ``completion`` (thinking segments and final answer) in the
    policy's tokens plus the end token the rollout must reach. With a shorter budget most
    rollouts are cut off mid-trajectory and get the format penalty instead of a judged answer.
    """
    if not completions:
        logger.warning("%s: no SFT trajectories to check max_new_tokens=%d against", variant, max_new_tokens)
        return
    tokenizer = load_tokenizer(policy_model)
    lengths = [len(ids) + 1 for ids in tokenizer(list(completions), add_special_tokens=False)["input_ids"]]
    p95 = math.ceil(float(np.percentile(lengths, 95)))
    if max_new_tokens < p95:
        raise ConfigError(
            f"{variant}.max_new_tokens={max_new_tokens} is shorter than the 95th percentile ({p95} tokens) of the SFT "
            f"trajectories the policy learned from (scoring.sft_set, {len(lengths)} completions): most rollouts would "
            f"be cut off; raise {variant}.max_new_tokens or set {variant}.check_length_budget: false"
        )
    logger.info("%s: max_new_tokens=%d fits the SFT trajectories (95th percentile %d tokens, max %d)",
                variant, max_new_tokens, p95, max(lengths))
