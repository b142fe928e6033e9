"""Rewards for launched test runs (imported by the launched processes: ``tests.training.stand_ins:...``)."""

from __future__ import annotations

import os
import signal


def text_reward(kill_rank0_at_call: int | None = None, raise_rank1_at_call: int | None = None):
    """A reward factory: deterministic in the completion text, no judge.

    The outcome (1..10) comes from the characters; a completion whose length is a multiple of
    3 counts as malformed (no outcome: ``-format_penalty``), and one longer than 10 characters
    gets one step reward at its middle, so the processes' shares differ in judged completions
    and steps (what per-process means would get wrong). ``kill_rank0_at_call``: the main
    process SIGKILLs itself at that call (a kill in the middle of a step, after the previous
    step's checkpoint). ``raise_rank1_at_call``: the second process raises a ValueError at that call.
    """
    calls = 0

    def reward_fn(prompts, completions, rubrics=None, truncated=None, **kwargs):
        nonlocal calls
        calls += 1
        if calls == kill_rank0_at_call and os.environ.get("RANK", "0") == "0":
            os.kill(os.getpid(), signal.SIGKILL)
        if calls == raise_rank1_at_call and os.environ.get("RANK", "0") == "1":
            raise ValueError(f"stand-in reward failed at call {calls} on rank 1")
        out = []
        for text in completions:
            malformed = len(text) % 3 == 0
            steps = [] if malformed or len(text) <= 10 else [(len(text) // 2, 0.1 * (sum(map(ord, text)) % 7) - 0.3)]
            out.append({"outcome": None if malformed else 1.0 + sum(map(ord, text)) % 10,
                        "format_violation": "malformed" if malformed else None, "rewards": steps,
                        "process": sum(r for _, r in steps), "n_reflections": len(steps), "n_steps": len(steps),
                        "n_improved": sum(r > 0 for _, r in steps), "n_redundant": sum(r <= 0 for _, r in steps),
                        "n_worsened": 0})
        return out

    return reward_fn
