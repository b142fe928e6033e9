"""Our PPO with token-level process rewards (``ppo.py``), its config and masked tensor helpers."""

from r2_write.rl.ppo import Actor, Critic, PolicyWithValue, Rollout, train
from r2_write.rl.ppo_config import PPOConfig

__all__ = ["Actor", "Critic", "PPOConfig", "PolicyWithValue", "Rollout", "train"]
