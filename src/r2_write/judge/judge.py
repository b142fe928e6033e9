"""The judges' shared machinery and the rubric judge (WritingBench criteria, 1-10 each).

Every kind of item (criterion score here; key-point label and quality rating in
:mod:`r2_write.judge.report`) goes through one dispatch, :func:`ask`, between two modes:

* ``generate``: the judge writes JSON (``{"score", "reason"}`` ...); malformed answers are
  retried (new seed, some temperature) up to ``max_attempts``; failures are counted and
  reported, and an item that never parses has value ``None`` (never 0).
* ``probability``: one forward pass; the value is read from the judge's next-token
  distribution over the item's candidates after an assistant prefix (``{"score": ``: the
  expected score over "1".."10"; local backend, or an endpoint that returns logprobs). Far
  cheaper, and never malformed. The prompts put the judged text before the item (criterion,
  key point), so the items of one text share a prefix that the local backend prefills once
  (:func:`r2_write.llm.transformers_backend.plan_shared_prefixes`); each item is still cached
  under its own key.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_serializer
from pydantic.fields import FieldInfo

from r2_write.judge.parsing import JudgeParseError, parse_score
from r2_write.llm.client import LLMClient
from r2_write.llm.config import SamplingParams
from r2_write.prompts.judge import SCORE_PREFIX, SCORE_TOKENS, PromptTemplate, criterion_messages
from r2_write.rubrics.schema import BANDS, Criterion

logger = logging.getLogger(__name__)


class JudgeConfig(BaseModel):
    """How the judge scores."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["generate", "probability"] = Field(
        "probability", description="probability (expected score, local backends or logprobs) or generate (JSON)."
    )
    max_attempts: int = Field(3, ge=1, description="Attempts per criterion when the answer is malformed.")
    temperature: float = Field(0.0, ge=0, description="First attempt temperature (WritingBench-style: 0).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass of every attempt.")
    retry_temperature: float = Field(0.7, ge=0, description="Temperature of retries after a malformed answer.")
    max_new_tokens: int = Field(96, ge=8, description="Length limit of a judge answer.")
    seed: int = Field(0, description="Judge sampling seed.")
    max_judged_chars: int | None = Field(
        None,
        ge=1,
        description="Judge context limit: cut judged texts to this many characters (None: the whole text, as the "
        "official scorers). Every cut is counted (stats.truncated, eval/judged_truncated).",
    )


class _PartialJudgeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_serializer(mode="wrap")
    def _only_set(self, handler) -> dict:
        """Dump the fields that were set (also to null): a dump read back overrides the same fields."""
        return {k: v for k, v in handler(self).items() if k in self.model_fields_set}

    def over(self, base: dict | None) -> dict:
        """The raw judge parameters ``base`` with the fields set here (also to null) replacing its own."""
        return {**(base or {}), **self.model_dump()}


def _optional(info: FieldInfo) -> FieldInfo:
    info = copy.copy(info)
    info.default, info.default_factory = None, None
    return info


JudgeOverrides = create_model(
    "JudgeOverrides",
    __base__=_PartialJudgeConfig,
    __doc__="A partial :class:`JudgeConfig`: every field optional, checked as there (unknown keys rejected); "
    "the fields set replace those of ``params:judge`` (:meth:`over`).",
    **{name: (f.annotation | None, _optional(f)) for name, f in JudgeConfig.model_fields.items()},
)


@dataclass
class JudgeItem:
    query: str
    response: str
    criterion: Criterion


@dataclass
class JudgeResult:
    """One criterion's verdict. ``score`` is None when every attempt failed."""

    score: float | None
    reason: str = ""
    attempts: int = 1
    error: str | None = None
    truncated: bool = False  # the judged text was cut at max_judged_chars


@dataclass
class JudgeStats:
    items: int = 0
    parse_failures: int = 0  # malformed answers (each attempt)
    failed_items: int = 0  # criteria with no score after all attempts
    truncated: int = 0  # items whose judged text was cut at max_judged_chars
    errors: list[str] = field(default_factory=list)

    def as_metrics(self, prefix: str = "judge") -> dict[str, float]:
        return {
            f"{prefix}/items": float(self.items),
            f"{prefix}/parse_failures": float(self.parse_failures),
            f"{prefix}/failed_items": float(self.failed_items),
            f"{prefix}/truncated": float(self.truncated),
        }


@dataclass(frozen=True)
class Probe:
    """How probability mode reads one kind of item.

    ``candidates`` are scored after the assistant ``prefix``; ``read(i, probs)`` turns item
    ``i``'s probabilities into ``(value, reason)``, or None when they carry no mass (the item
    then fails with ``no_mass`` as its error).
    """

    candidates: list[str]
    prefix: str
    read: Callable[[int, dict[str, float]], tuple[Any, str] | None]
    no_mass: str


Answer = tuple[Any, str, int, "str | None"]
"""One judged item: ``(value, reason, attempts, error)``; value None when never answered validly."""


def ask(
    client: LLMClient,
    convs: list,
    cfg: JudgeConfig,
    stats: JudgeStats,
    parse: Callable[[str], tuple[Any, str]],
    probe: Probe,
) -> list[Answer]:
    """The one dispatch between the judge's modes, for every kind of item.

    ``generate``: :func:`generate_with_retries` with ``parse``; ``probability``: one batch of
    next-token probabilities read by ``probe``. Items without an answer are counted in
    ``stats`` (``failed_items``, ``errors``).
    """
    if cfg.mode == "generate":
        return generate_with_retries(client, convs, parse, cfg, stats)
    out: list[Answer] = []
    for i, probs in enumerate(client.next_token_probs(convs, probe.candidates, probe.prefix)):
        read = probe.read(i, probs)
        if read is None:
            stats.failed_items += 1
            stats.errors.append(probe.no_mass)
            out.append((None, "", 1, probe.no_mass))
        else:
            out.append((read[0], read[1], 1, None))
    return out


def expected_value(probs: dict[str, float]) -> float | None:
    """The expectation of the integer candidates under their renormalised probabilities (None: no mass)."""
    mass = sum(probs.values())
    if mass <= 0 or math.isnan(mass):
        return None
    return sum(int(t) * p for t, p in probs.items()) / mass


class BaseJudge:
    """A judge over an :class:`LLMClient`: settings, failure counters and the cut judged texts."""

    def __init__(self, client: LLMClient, cfg: JudgeConfig | None = None):
        self.client = client
        self.cfg = cfg or JudgeConfig()
        self.stats = JudgeStats()

    def _ask(self, convs: list, judged: list[str], parse: Callable[[str], tuple[Any, str]], probe: Probe) -> list[tuple]:
        """:func:`ask` for ``convs`` (items already counted), each answer with whether its judged
        text was cut at ``max_judged_chars`` (counted in ``stats.truncated``)."""
        limit = self.cfg.max_judged_chars
        cut = [limit is not None and len(text.strip()) > limit for text in judged]
        self.stats.truncated += sum(cut)
        return [(*a, c) for a, c in zip(ask(self.client, convs, self.cfg, self.stats, parse, probe), cut)]


class RubricJudge(BaseJudge):
    """Scores (query, response, criterion) items with an :class:`LLMClient`.

    ``template`` replaces the built-in judge prompt (e.g. the official WritingBench critic's).
    """

    def __init__(self, client: LLMClient, cfg: JudgeConfig | None = None, template: PromptTemplate | None = None):
        super().__init__(client, cfg)
        self.template = template

    def score(self, items: list[JudgeItem]) -> list[JudgeResult]:
        """Score every item; batched through the client (cached, retried)."""
        self.stats.items += len(items)
        if not items:
            return []
        limit = self.cfg.max_judged_chars
        convs = [criterion_messages(it.query, it.response, it.criterion, limit, self.template) for it in items]

        def read(i: int, probs: dict) -> tuple[float, str] | None:
            expected = expected_value(probs)
            # the reason is the rubric band the expected score falls in
            return None if expected is None else (round(expected, 4), band_for(items[i].criterion, expected))

        probe = Probe(SCORE_TOKENS, SCORE_PREFIX, read, "no probability mass on score tokens")
        answers = self._ask(convs, [it.response for it in items], parse_score, probe)
        return [JudgeResult(None if v is None else float(v), why, n, err, cut) for v, why, n, err, cut in answers]

    def score_responses(
        self, queries: list[str], responses: list[str], rubrics: list[list[Criterion]]
    ) -> list[list[JudgeResult]]:
        """Score each response on every criterion of its rubric (one flat batch)."""
        items = [JudgeItem(q, r, c) for q, r, crit in zip(queries, responses, rubrics) for c in crit]
        flat = iter(self.score(items))
        return [[next(flat) for _ in crit] for crit in rubrics]


def generate_with_retries(
    client: LLMClient, convs: list, parse: Callable[[str], tuple[Any, str]], cfg: JudgeConfig, stats: JudgeStats
) -> list[tuple[Any, str, int, str | None]]:
    """Ask, parse, and ask again (new seed, ``retry_temperature``) what did not parse.

    Returns one ``(value, reason, attempts, error)`` per conversation; ``value`` is None
    (never 0) after ``cfg.max_attempts`` failed attempts, with the last error, and the
    failure is counted in ``stats`` (malformed answers in ``parse_failures``).
    """
    results: list[tuple | None] = [None] * len(convs)
    last_error = [""] * len(convs)
    todo = list(range(len(convs)))
    for attempt in range(cfg.max_attempts):
        if not todo:
            break
        sampling = SamplingParams(
            temperature=cfg.temperature if attempt == 0 else cfg.retry_temperature,
            top_p=cfg.top_p,
            max_new_tokens=cfg.max_new_tokens,
            seed=cfg.seed + attempt,
        )
        still = []
        for i, g in zip(todo, client.generate([convs[i] for i in todo], sampling)):
            if not g.ok:
                last_error[i] = f"call failed: {g.error}"
                still.append(i)
                continue
            try:
                value, reason = parse(g.text)
                results[i] = (value, reason, attempt + 1, None)
            except JudgeParseError as exc:
                stats.parse_failures += 1
                last_error[i] = str(exc)
                still.append(i)
        todo = still
    for i in todo:
        stats.failed_items += 1
        stats.errors.append(last_error[i])
        results[i] = (None, "", cfg.max_attempts, last_error[i])
    if todo:
        logger.warning("judge: %d of %d items unscored after %d attempts", len(todo), len(convs), cfg.max_attempts)
    return results  # type: ignore[return-value]


def band_for(criterion: Criterion, score: float) -> str:
    """The description of the criterion's score band that ``score`` falls in."""
    band = BANDS[min(int((max(score, 1.0) - 1) // 2), len(BANDS) - 1)]
    return criterion.bands[band]


def mean_score(results: list[JudgeResult]) -> float | None:
    """Mean over the criteria that were scored; None when none was (never 0)."""
    scored = [r.score for r in results if r.score is not None]
    return sum(scored) / len(scored) if scored else None
