"""Shared stand-ins of the RL tests: prompts, a small PPOConfig and deterministic reward functions."""

from r2_write.rl.ppo_config import PPOConfig

PROMPTS = ["Write a haiku about the sea.", "Hi", "Describe a storm in one line.", "Name a colour."]


def small_cfg(**overrides) -> PPOConfig:
    values = dict(batch_size=2, mini_batch_size=2, max_new_tokens=8, learning_rate=1e-5, critic_learning_rate=1e-3)
    return PPOConfig(**{**values, **overrides})


def fake_reward_fn(prompts, completions, rubrics=None, **kwargs):
    """Deterministic: outcome from the completion's length, no steps."""
    assert rubrics is None or len(rubrics) == len(completions)
    return [{"outcome": 1.0 + len(c) % 10, "format_violation": None, "rewards": [], "process": 0.0,
             "n_reflections": 0, "n_steps": 0, "n_improved": 0, "n_redundant": 0, "n_worsened": 0}
            for c in completions]


def stepped_reward_fn(prompts, completions, rubrics=None, **kwargs):
    """Well-formed stand-in results with process rewards on two positions, so lambda matters."""
    return [{"outcome": 1.0 + len(c) % 10, "format_violation": None, "rewards": [(1, 0.4), (3, -0.2)],
             "process": 0.2, "n_reflections": 1, "n_steps": 1, "n_improved": 1, "n_redundant": 0, "n_worsened": 0}
            for c in completions]

