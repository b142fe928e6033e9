"""Generate instance-specific rubrics with the rubric-writer role, validated and retried."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from r2_write.llm.client import LLMClient
from r2_write.llm.config import SamplingParams
from r2_write.prompts.rubric_writer import rubric_messages
from r2_write.rubrics.schema import Criterion


class RubricWriterConfig(BaseModel):
    """Rubric-writer settings."""

    model_config = ConfigDict(extra="forbid")

    n_criteria: int = Field(5, ge=1, description="Criteria per query (WritingBench: 5).")
    max_attempts: int = Field(2, ge=1, description="Attempts per query when the output is invalid.")
    temperature: float = Field(0.7, ge=0, description="Sampling temperature (retries need > 0 to differ).")
    max_new_tokens: int = Field(700, ge=16, description="Length limit of one rubric answer.")
    seed: int = Field(0, description="Seed of the first attempt (retries add the attempt number).")


class RubricParseError(ValueError):
    """The rubric writer's answer is not a valid list of criteria."""


def parse_rubric(text: str, n_criteria: int) -> list[Criterion]:
    """Parse and validate a rubric answer (a JSON list of WritingBench criteria).

    Raises :class:`RubricParseError` with the reason (no JSON list, wrong count, or the
    first invalid field).
    """
    m = re.search(r"\[.*\]", text or "", re.S)
    if not m:
        raise RubricParseError("no JSON list in the answer")
    try:
        rows = json.loads(m.group(0))
    except json.JSONDecodeError as exc:
        raise RubricParseError(f"invalid JSON: {exc.msg} at char {exc.pos}") from None
    except (ValueError, RecursionError) as exc:  # a 5000-digit number; lists nested thousands deep
        raise RubricParseError(f"invalid JSON: {type(exc).__name__}: {str(exc)[:80]}") from None
    if not isinstance(rows, list) or len(rows) != n_criteria:
        raise RubricParseError(f"expected a list of {n_criteria} criteria, got {len(rows) if isinstance(rows, list) else type(rows).__name__}")
    out = []
    for k, row in enumerate(rows):
        try:
            out.append(Criterion.model_validate(row))
        except ValidationError as exc:
            err = exc.errors()[0]
            raise RubricParseError(f"criterion {k + 1}, field {'.'.join(map(str, err['loc'])) or '?'}: {err['msg']}") from None
    return out


@dataclass
class RubricOutcome:
    id: str
    criteria: list[Criterion] | None
    attempts: int
    error: str | None = None


def write_rubrics(items: list[tuple[str, str]], client: LLMClient, cfg: RubricWriterConfig) -> list[RubricOutcome]:
    """Ask the rubric writer for each (id, query); retry invalid answers; keep every failure's reason."""
    outcomes = {i: RubricOutcome(i, None, 0) for i, _ in items}
    todo = list(items)
    for attempt in range(cfg.max_attempts):
        if not todo:
            break
        sampling = SamplingParams(temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed + attempt)
        gens = client.generate([rubric_messages(q, cfg.n_criteria) for _, q in todo], sampling)
        still = []
        for (i, q), g in zip(todo, gens):
            o = outcomes[i]
            o.attempts = attempt + 1
            try:
                if not g.ok:
                    raise RubricParseError(f"call failed: {g.error}")
                o.criteria, o.error = parse_rubric(g.text, cfg.n_criteria), None
            except RubricParseError as exc:
                o.error = str(exc)
                still.append((i, q))
        todo = still
    return [outcomes[i] for i, _ in items]
