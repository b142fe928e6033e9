"""The one interface every chat backend implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from r2_write.llm.config import SamplingParams

Message = dict[str, str]
Conversation = list[Message]


class LLMError(RuntimeError):
    """A model call could not be made; the message says what is wrong and how to fix it."""


class EndpointError(LLMError):
    """The endpoint cannot serve this run at all (unreachable, wrong URL or model, key refused,
    or it stopped answering mid-batch): the node, and with it the run, stops at once."""


class FailureBudgetError(LLMError):
    """A node's share of failed calls or fallbacks is above its role's ``max_failed_share``."""


@dataclass
class Generation:
    """One completion. ``error`` is set (and ``text`` empty) when the call failed for good."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class ChatBackend(Protocol):
    """Chat generation over batches of conversations.

    ``generate`` returns one :class:`Generation` per conversation, in order. A backend
    that can read its next-token distribution also implements ``next_token_probs``.
    """

    name: str
    model: str

    def generate(self, conversations: list[Conversation], sampling: SamplingParams) -> list[Generation]: ...


class SupportsTokenProbs(Protocol):
    def next_token_probs(
        self, conversations: list[Conversation], candidates: list[str], assistant_prefix: str = ""
    ) -> list[dict[str, float]]:
        """Probability of each candidate string as the next token after ``assistant_prefix``."""
        ...
