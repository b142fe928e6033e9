"""Our PPO with token-level process rewards: the algorithm (``ppo.py``), rollouts (``rollout.py``), the models
(``model.py``), the training loop (``trainer.py``), its config (``ppo_config.py``) and masked tensor helpers."""

from r2_write.rl.model import Actor, Critic, PolicyWithValue
from r2_write.rl.ppo_config import PPOConfig
from r2_write.rl.rollout import Rollout
from r2_write.rl.trainer import train

__all__ = ["Actor", "Critic", "PPOConfig", "PolicyWithValue", "Rollout", "train"]
