"""Rewards for RL: outcome rubric score plus the process reward on reflection->revision steps."""

from r2_write.rewards.process import (
    ProcessRewardConfig,
    VersionReward,
    outcome_reward_fn,
    process_reward_fn,
    token_rewards,
    version_rewards,
)

__all__ = ["ProcessRewardConfig", "VersionReward", "outcome_reward_fn", "process_reward_fn", "token_rewards",
           "version_rewards"]
