"""Writer-judge synthesis of thinking trajectories with reflection and revision.

For every prompt, batched over all prompts at once: the writer plans and drafts; the
judge scores the draft on each rubric criterion; the writer reflects on the critique in
its own voice and revises; the judge scores the revision. Rounds repeat up to
``max_rounds`` or until a revision fails to raise the score by ``min_improvement``. The
rounds are stitched into ONE trajectory (see :mod:`r2_write.trajectory`) followed by the
final answer (the best-scoring version). Scores before/after every step are kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from r2_write.judge.judge import JudgeResult, RubricJudge, mean_score
from r2_write.llm.client import LLMClient
from r2_write.llm.config import SamplingParams
from r2_write.prompts import writer
from r2_write.rubrics.schema import Criterion
from r2_write.trajectory import Segment, Trajectory, render, sanitize

logger = logging.getLogger(__name__)


class SynthesisConfig(BaseModel):
    """Writer-judge loop settings."""

    model_config = ConfigDict(extra="forbid")

    max_rounds: int = Field(2, ge=1, description="Reflection->revision rounds at most.")
    min_improvement: float = Field(0.0, ge=0, description="A revision must beat the previous score by more than this to continue.")
    plan_tokens: int = Field(96, ge=8, description="Length limit of the plan.")
    draft_tokens: int = Field(256, ge=8, description="Length limit of a draft or revision.")
    reflection_tokens: int = Field(96, ge=8, description="Length limit of a reflection.")
    temperature: float = Field(0.7, ge=0, description="Writer sampling temperature.")
    top_p: float = Field(0.95, gt=0, le=1, description="Writer nucleus sampling.")
    seed: int = Field(0, description="Writer seed.")


@dataclass
class _State:
    id: str
    query: str
    criteria: list[Criterion]
    segments: list[Segment] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    scores: list[float | None] = field(default_factory=list)
    verdicts: list[list[JudgeResult]] = field(default_factory=list)
    active: bool = True
    stop_reason: str = "max_rounds"
    error: str | None = None


def _sampling(cfg: SynthesisConfig, tokens: int, salt: int) -> SamplingParams:
    return SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=tokens, seed=cfg.seed + salt)


def _texts(client: LLMClient, states: list[_State], convs, sampling) -> list[str]:
    """Generate; a state whose call failed for good is stopped with its last error."""
    out = []
    for s, g in zip(states, client.generate(convs, sampling)):
        if not g.ok:
            s.active, s.stop_reason, s.error = False, "writer_failed", g.error
        out.append(sanitize(g.text))
    return out


def _judge(states: list[_State], judge: RubricJudge, texts: list[str]) -> None:
    verdicts = judge.score_responses([s.query for s in states], texts, [s.criteria for s in states])
    for s, text, v in zip(states, texts, verdicts):
        s.versions.append(text)
        s.verdicts.append(v)
        s.scores.append(mean_score(v))


def synthesize(
    prompts: list[dict], writer_client: LLMClient, judge: RubricJudge, cfg: SynthesisConfig
) -> list[dict]:
    """Run the writer-judge loop for every prompt.

    Args:
        prompts: dicts with ``id``, ``prompt`` and ``criteria`` (list of :class:`Criterion`).
        writer_client: the writer's model client.
        judge: the rubric judge.
        cfg: loop settings.

    Returns:
        One record per prompt: the rendered trajectory, the final answer, every version's
        score, and the score before/after each reflection->revision step.
    """
    states = [_State(p["id"], p["prompt"], p["criteria"]) for p in prompts]
    plans = _texts(writer_client, states, [writer.plan_messages(s.query) for s in states], _sampling(cfg, cfg.plan_tokens, 0))
    planned = [(s, p) for s, p in zip(states, plans) if s.error is None]  # no draft after a failed plan
    drafts = _texts(
        writer_client,
        [s for s, _ in planned],
        [writer.draft_messages(s.query, p) for s, p in planned],
        _sampling(cfg, cfg.draft_tokens, 1),
    )
    for (s, p), d in zip(planned, drafts):
        s.segments += [Segment("plan", p), Segment("draft", d)]
    ok = [s for s in states if s.error is None]
    _judge(ok, judge, [s.segments[-1].text for s in ok])
    for rnd in range(cfg.max_rounds):
        live = [s for s in states if s.active]
        if not live:
            break
        critiques = [
            writer.format_critique([c.name for c in s.criteria], [v.score for v in s.verdicts[-1]], [v.reason for v in s.verdicts[-1]])
            for s in live
        ]
        reflections = _texts(
            writer_client,
            live,
            [writer.reflect_messages(s.query, s.versions[-1], c) for s, c in zip(live, critiques)],
            _sampling(cfg, cfg.reflection_tokens, 10 + 2 * rnd),
        )
        kept = [(s, writer.ensure_reflection_voice(r)) for s, r in zip(live, reflections) if s.error is None]
        live, reflections = [k[0] for k in kept], [k[1] for k in kept]
        revisions = _texts(
            writer_client,
            live,
            [writer.revise_messages(s.query, s.versions[-1], r) for s, r in zip(live, reflections)],
            _sampling(cfg, cfg.draft_tokens, 11 + 2 * rnd),
        )
        for s, r, v in zip(live, reflections, revisions):
            s.segments += [Segment("reflection", r), Segment("revision", v)]
        live = [s for s in live if s.error is None]
        _judge(live, judge, [s.segments[-1].text for s in live])
        for s in live:
            before, after = s.scores[-2], s.scores[-1]
            if before is None or after is None or after - before <= cfg.min_improvement:
                s.active, s.stop_reason = False, "judge_failed" if before is None or after is None else "no_improvement"
    return [_record(s) for s in states]


def _nan(x: float | None) -> float:
    return float("nan") if x is None else x


def _record(s: _State) -> dict:
    if s.error is not None:
        return {"id": s.id, "stop_reason": s.stop_reason, "error": s.error}
    scored = [(sc, i) for i, sc in enumerate(s.scores) if sc is not None]
    best = max(scored)[1] if scored else len(s.versions) - 1
    traj = Trajectory(s.segments, answer=s.versions[best])
    steps = len(s.versions) - 1
    return {
        "id": s.id,
        "trajectory": render(traj),
        "final_answer": s.versions[best],
        "n_steps": steps,
        "version_scores": [_nan(x) for x in s.scores],
        "score_before": [_nan(x) for x in s.scores[:-1]],
        "score_after": [_nan(x) for x in s.scores[1:]],
        "first_score": s.scores[0],
        "final_score": s.scores[best],
        "best_version": best,
        "judge_failures": sum(v.score is None for vs in s.verdicts for v in vs),
        "stop_reason": s.stop_reason,
        "error": None,
    }
