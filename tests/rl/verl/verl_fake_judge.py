"""A deterministic stand-in for the reward judge, importable by veRL's reward workers in the tests (build_reward spec)."""

from r2_write.rewards.process import process_reward_fn


def score(prompts, texts, rubrics):
    """1-10 by text length: revisions of different lengths gain, lose or tie."""
    return [float(1 + (len(t) * 7) % 10) for t in texts]


def fake_reward(reward_cfg=None):
    return process_reward_fn(score, reward_cfg), None
