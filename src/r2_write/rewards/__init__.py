"""Rewards for RL: the R2-Write outcome + process reward (PPO) and an outcome-only baseline (GRPO)."""

from r2_write.rewards.process import (
    ProcessRewardConfig,
    outcome_reward_fn,
    process_reward_fn,
    step_rewards,
    token_rewards,
)

__all__ = ["ProcessRewardConfig", "outcome_reward_fn", "process_reward_fn", "step_rewards", "token_rewards"]
