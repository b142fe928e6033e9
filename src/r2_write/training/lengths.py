"""Length checks before training: the response budget must fit what the policy learned to write.

The nodes call these with catalog inputs; the tokenizer comes from the one loader
(:func:`r2_write.llm.loading.load_tokenizer`).
"""

from __future__ import annotations

import logging
import math

import numpy as np

from r2_write.config import ConfigError
from r2_write.llm.loading import load_tokenizer

logger = logging.getLogger(__name__)


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
