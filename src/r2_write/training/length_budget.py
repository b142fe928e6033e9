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

``tests/test_config.py`` checks conf/paper against :func:`length_budget`.

>>> from r2_write.synthesis import SynthesisConfig
>>> b = length_budget(SynthesisConfig(max_rounds=3, plan_tokens=1024, draft_tokens=4096, reflection_tokens=1024), 2048)
>>> b.response, b.ppo_max_new_tokens, b.grpo_max_completion_length, b.sft_max_length
(25088, 25088, 25088, 27136)
"""

from __future__ import annotations

from dataclasses import dataclass

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
