"""Reading what an OpenAI-compatible endpoint answers: chat completions, logprobs, model lists
and ``Retry-After`` headers (for :mod:`r2_write.llm.openai_backend`).

A body that is not a usable chat completion raises :class:`Malformed` (the backend retries
it); one without the logprobs asked for raises :class:`NoLogprobs`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

from r2_write.llm.base import Generation

T = TypeVar("T")


class Malformed(Exception):
    """The server answered 200 with something that is not a usable chat completion."""


class NoLogprobs(Exception):
    """The server answered without the logprobs that were asked for."""


def model_ids(listing: Any) -> set[str]:
    """Model ids of a ``GET /models`` answer (empty when it is not the OpenAI list shape)."""
    data = listing.get("data") if isinstance(listing, dict) else None
    return {str(m.get("id")) for m in data if isinstance(m, dict)} if isinstance(data, list) else set()


def retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` / ``retry-after`` (numeric forms only)."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name) if headers is not None else None
        if value is None:
            continue
        try:
            seconds = float(value) / scale
        except ValueError:
            continue
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    return None


def checked(parse: Callable[[Any], T], response: Any) -> T:
    """``parse(response)``, with any shape error turned into Malformed (retryable)."""
    try:
        return parse(response)
    except (Malformed, NoLogprobs):
        raise
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
        raise Malformed(f"unexpected response shape: {type(exc).__name__}: {exc}") from exc


def _first_choice(response: Any) -> dict:
    """``choices[0]`` of a chat-completion JSON object, or Malformed."""
    try:
        choice = response["choices"][0]
        if isinstance(choice, dict):
            return choice
    except (IndexError, KeyError, TypeError):
        pass
    raise Malformed(f"not a chat completion ({type(response).__name__}: {str(response)[:80]})")


def parse_generation(response: Any) -> Generation:
    choice = _first_choice(response)
    text = (choice.get("message") or {}).get("content")
    if text is not None and not isinstance(text, str):
        raise Malformed(f"message content is {type(text).__name__}, not text")
    usage = response.get("usage") or {}
    return Generation(
        text=(text or "").strip(),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        finish_reason=str(choice.get("finish_reason") or "stop"),
    )


def parse_probs(response: Any, candidates: list[str]) -> dict[str, float]:
    content = (_first_choice(response).get("logprobs") or {}).get("content") or []
    top = content[0].get("top_logprobs") if content and isinstance(content[0], dict) else None
    if not top:
        raise NoLogprobs()
    probs = dict.fromkeys(candidates, 0.0)
    for entry in top:
        token = str(entry.get("token") or "").strip()
        if token in probs:
            probs[token] += math.exp(float(entry["logprob"]))
    return probs
