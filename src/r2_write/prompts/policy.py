"""The policy's prompt: the writing request alone, as one user turn.

Every stage that shows the policy a request builds it here, so the model is trained and
measured on one format: SFT examples, GRPO and PPO rollouts (through the tokenizer's chat
template), difficulty filtering and the WritingBench responses (as WritingBench's
``generate_response.py``: the query alone, no system prompt).
"""

from __future__ import annotations

from r2_write.llm.base import Conversation


def policy_messages(prompt: str) -> Conversation:
    """The chat the policy answers: ``prompt`` as the only (user) message.

    >>> policy_messages("Write a haiku.")
    [{'role': 'user', 'content': 'Write a haiku.'}]
    """
    return [{"role": "user", "content": prompt}]
