"""A scripted chat backend for tests: no model, every answer chosen by the test.

``FakeBackend`` has the backend interface (``name``, ``model``, ``generate``,
``next_token_probs``). By default it answers like a well-behaved model of each role,
recognised from the prompt: the judge returns JSON scores, the rubric writer a valid
rubric, the writer a plan / draft / reflection / revision. Tests replace ``respond`` (or
``probs``) to script malformed answers, failures or score sequences, and read ``batches``
to see exactly which conversations reached the "model".
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Callable

from r2_write.llm.base import Conversation, Generation
from r2_write.llm.client import LLMClient
from r2_write.llm.config import LLMConfig, SamplingParams
from r2_write.prompts import judge as judge_prompts
from r2_write.prompts import rubric_writer as rubric_prompts
from r2_write.prompts import writer as writer_prompts
from r2_write.rubrics.schema import BANDS

Respond = Callable[[Conversation, SamplingParams], "str | Generation"]
Probs = Callable[[Conversation, list, str], dict]


def _static_line(template: str) -> str:
    """The longest placeholder-free line of a prompt template: recognises the template."""
    return max((ln.strip() for ln in template.splitlines() if "{" not in ln), key=len)


def user_text(conv: Conversation) -> str:
    return "\n".join(m["content"] for m in conv if m["role"] == "user")


def role_of(conv: Conversation) -> str:
    """judge | rubric_writer | plan | draft | reflect | revise | other."""
    system = next((m["content"] for m in conv if m["role"] == "system"), "")
    if system == judge_prompts.SYSTEM:
        return "judge"
    if system == rubric_prompts.SYSTEM:
        return "rubric_writer"
    text = user_text(conv)
    for step in ("REVISE", "REFLECT", "DRAFT", "PLAN"):
        if _static_line(getattr(writer_prompts, step)) in text:
            return step.lower()
    return "other"


def rubric_json(n: int, name: str = "Criterion") -> str:
    """A valid rubric answer with ``n`` criteria."""
    rows = [
        {"name": f"{name} {k + 1}", "criteria_description": f"Is aspect {k + 1} handled well?", **{b: f"band {b}" for b in BANDS}}
        for k in range(n)
    ]
    return json.dumps(rows)


def default_respond(conv: Conversation, sampling: SamplingParams) -> str:
    role = role_of(conv)
    if role == "judge":
        return '{"score": 6, "reason": "solid but generic"}'
    if role == "rubric_writer":
        m = re.search(r"exactly (\d+)", user_text(conv))
        return rubric_json(int(m.group(1)) if m else 5)
    return {
        "plan": "- audience: readers\n- points: two\n- structure: intro, body",
        "draft": "First draft of the response.",
        "reflect": "The draft lacks concrete detail; I will add examples.",
        "revise": "Revised response with concrete examples.",
    }.get(role, "ok")


def seeded_respond(conv: Conversation, sampling: SamplingParams) -> str:
    """An answer that depends on the conversation AND the seed (for determinism tests)."""
    h = hashlib.sha256(json.dumps(conv).encode()).hexdigest()[:8]
    return f"{h}-{sampling.seed}"


def uniform_probs(conv: Conversation, candidates: list, prefix: str) -> dict:
    return {c: 1.0 / len(candidates) for c in candidates}


class FakeBackend:
    """Scripted backend; ``fail_after`` raises on the (N+1)-th ``generate`` call (a kill)."""

    name = "fake"

    def __init__(
        self,
        respond: Respond | None = None,
        probs: Probs | None = None,
        model: str = "fake-model",
        fail_after: int | None = None,
    ):
        self.model = model
        self.respond = respond or default_respond
        self.probs = probs or uniform_probs
        self.fail_after = fail_after
        self.batches: list[list[Conversation]] = []
        self.seeds: list[int] = []
        self.prob_batches: list[list[Conversation]] = []

    @property
    def n_generated(self) -> int:
        """Conversations that reached ``generate``."""
        return sum(len(b) for b in self.batches)

    def generate(self, conversations: list[Conversation], sampling: SamplingParams) -> list[Generation]:
        if self.fail_after is not None and len(self.batches) >= self.fail_after:
            raise RuntimeError("backend killed")
        self.batches.append(list(conversations))
        self.seeds.append(sampling.seed)
        out = []
        for conv in conversations:
            r = self.respond(conv, sampling)
            if not isinstance(r, Generation):
                r = Generation(text=r, prompt_tokens=len(user_text(conv).split()), completion_tokens=len(r.split()))
            out.append(r)
        return out

    def next_token_probs(self, conversations: list[Conversation], candidates: list[str], assistant_prefix: str = "") -> list[dict]:
        self.prob_batches.append(list(conversations))
        return [self.probs(c, candidates, assistant_prefix) for c in conversations]


def make_client(backend: FakeBackend | None = None, cache_path=None, batch_size: int = 4) -> LLMClient:
    """An :class:`LLMClient` over a fake backend (no cache unless ``cache_path``)."""
    cfg = LLMConfig(backend="transformers", model="fake-model", batch_size=batch_size, cache_path=None if cache_path is None else str(cache_path))
    return LLMClient(cfg, backend=backend or FakeBackend())
