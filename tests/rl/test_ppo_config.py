"""PPOConfig: derived sizes and validation."""

import pytest

from r2_write.rl.ppo_config import PPOConfig


def test_config_derived_sizes_and_validation():
    cfg = PPOConfig(batch_size=8, mini_batch_size=4, micro_batch_size=2, rollouts_per_prompt=2)
    assert (cfg.num_mini_batches, cfg.prompts_per_step, cfg.grad_accum_steps) == (2, 4, 2)
    with pytest.raises(ValueError, match="multiple of mini_batch_size"):
        PPOConfig(batch_size=10, mini_batch_size=4)
    with pytest.raises(ValueError, match="gamma"):
        PPOConfig(gamma=1.5)

