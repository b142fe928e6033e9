"""The R2-Write reward: outcome rubric score of the final answer + lambda x process reward.

A completion is a thinking trajectory (see :mod:`r2_write.trajectory`): a draft, then
reflection->revision *steps*, then the final answer. The judge scores the draft, every
revision and the answer (1-10, ``n(s) = (s - 1) / 9``). Each version counts at most at the
answer's level, ``v_k = min(s_k, s_answer)``, and the process reward is measured against the
**last credited version** (its level ``L``):

* the draft earns its (capped) level ``n(v_0)``, the *anchor*, on the token that closes
  ``</draft>``; ``L = v_0``;
* a step whose revision beats ``L`` by more than ``min_gain`` is credited: it earns
  ``(v_k - L) / 9 - step_cost`` and ``L = v_k``;
* any other step is redundant and earns ``-(redundancy_penalty + step_cost)`` without moving
  ``L``: one that does not beat ``L`` by more than ``min_gain`` (several small real gains add up
  until their sum passes it), one that lowers it, an empty revision or a revision equal to an
  earlier version (exact text, outer whitespace aside; both without a judge call), and a step
  with no scored draft before it.

Properties (each a property test in ``tests/rewards/test_properties.py``, through the
trainer's token path):

* **ceiling**: the anchor plus the credits telescope to ``n(L) <= n(answer)``, so
  ``outcome + lambda x process <= (1 + lambda) x n(answer)``: a version better than the answer
  earns nothing beyond it, and a sandbagged draft earns nothing (the anchor falls by what the
  gain rises);
* **no free step**: every uncredited step costs ``redundancy_penalty + step_cost`` at any
  length; more than ``max_steps`` steps is a format violation (``-format_penalty``, validated
  to lie below every well-formed total);
* **reflection pays when it helps**: a step that raises the answer by more than ``min_gain``
  raises the total (checked when PPO starts, :meth:`ProcessRewardConfig.weight_problem`:
  ``min_gain / 9 >= lambda x (redundancy_penalty + step_cost)``, so the outcome's rise pays
  for the step even where the step itself is not credited; the defaults hold for every
  lambda <= 1);
* duplicates are exact texts; anything else is judged; a text the judge returns no finite
  score for counts as ``score_min``; a malformed completion never raises.

Reward of a completion (one formula)::

    R = n(s_answer) + lambda * (n(v_0) + sum_k [g_k > min_gain] (g_k / 9 - c)
                                    - sum_k [g_k <= min_gain] (p + c))           (well-formed)
    R = -format_penalty                                                          (otherwise)

with ``v_k = min(s_k, s_answer)``, ``g_k = v_k - L_{k-1}`` (``L`` the last credited level),
``c = step_cost``, ``p = redundancy_penalty``. A completion that is truncated at
``max_new_tokens``, lacks a closed ``<think>...</think>``, has unbalanced or misordered segment
tags, text outside segments, an empty answer or a segment tag in any spelling in the answer
(:func:`r2_write.trajectory.format_error`), or more than ``max_steps`` steps, is never judged:
it gets ``-format_penalty``.

Is one more reflection worth it? At the defaults, with the paper's rates (55% of steps help,
10% hurt, 35% change nothing), a typical change of 0.5 point and the step's revision as the
new answer, the expected change of the total (outcome + lambda x process) is positive, while
a step that changes nothing is always negative (a worsened answer also lowers the anchor,
which is capped at the answer):

>>> print(reflection_value_table(ProcessRewardConfig(), process_weight=0.5))
step outcome        share  step reward  x lambda    total
improved by 0.5      0.55      +0.0506   +0.0253  +0.0808
unchanged            0.35      -0.0250   -0.0125  -0.0125
worsened by 0.5      0.10      -0.0250   -0.0125  -0.0958
expected (honest)              +0.0166   +0.0083  +0.0305
redundant (duplicate)          -0.0250   -0.0125  -0.0125

In PPO the rewards are *token-level* (:func:`token_rewards`): each version's reward, times
``process_weight``, sits on the token that closes it, and the outcome (or the format penalty)
on the last token. Two reward builders, both with the contract ``fn(prompts, completions, **kwargs)``:

* :func:`process_reward_fn` (PPO): one dict per completion with the outcome and the placed rewards;
* :func:`outcome_reward_fn` (TRL GRPO baseline): one float per completion.

``judge_fn(prompts, texts, rubrics) -> list[float]`` scores each text for its prompt on the
1-10 scale (``rubrics`` holds one entry per text, each may be None).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from r2_write.trajectory import format_error, parse, segment_spans, split_thinking

JudgeFn = Callable[[list[str], list[str], list[Any]], list[float]]


class ProcessRewardConfig(BaseModel):
    """How judge scores become rewards (see the module docstring for the formula).

    Lambda, the weight of the process term, is not a field here: it has one home,
    :attr:`r2_write.rl.ppo_config.PPOConfig.process_weight` (``ppo.process_weight``), and is
    passed to :func:`token_rewards` explicitly.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    min_gain: float = Field(
        0.25,
        description="A revision must beat the last credited version by more than this (1-10 scale) to count as a "
                    "gain; the mean of five integer criteria moves in steps of 0.2.",
    )
    redundancy_penalty: float = Field(0.02, description="Penalty of a step that does not beat the last credited version.")
    step_cost: float = Field(
        0.005, description="Cost of every step, so one real step beats the same gain split in many."
    )
    max_steps: int = Field(
        8,
        description="A completion with more reflection->revision steps is a format violation (-format_penalty); "
                    "every step up to it costs, so no step is free.",
    )
    format_penalty: float = Field(
        1.0, description="Reward (negated) of a truncated or malformed completion, which is never judged."
    )
    score_min: float = Field(1.0, description="Lowest judge score (maps to outcome 0).")
    score_max: float = Field(10.0, description="Highest judge score (maps to outcome 1).")

    @model_validator(mode="after")
    def _check(self) -> ProcessRewardConfig:
        for name in ("min_gain", "redundancy_penalty", "step_cost", "max_steps", "format_penalty"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.score_max <= self.score_min:
            raise ValueError(f"score_max ({self.score_max}) must exceed score_min ({self.score_min})")
        step = self.redundancy_penalty + self.step_cost
        if self.max_steps and self.max_steps * step >= self.format_penalty:
            raise ValueError(
                f"format_penalty ({self.format_penalty:g}) must exceed max_steps x (redundancy_penalty + step_cost) "
                f"({self.max_steps * step:g}), so a malformed completion earns less than any well-formed one")
        return self

    def weight_problem(self, process_weight: float) -> str | None:
        """Why lambda (``process_weight``) and these settings break "reflection pays when it helps", or None.

        A step that raises the answer by just over ``min_gain`` but is itself not credited (an
        earlier version was already a little better than the old answer) changes the total by
        about ``min_gain / span - lambda x (redundancy_penalty + step_cost)``, which must not be
        negative. The defaults satisfy it for every lambda <= 1. The PPO node checks it when it
        builds the two configs (lambda's home is ``ppo.process_weight``).

        >>> ProcessRewardConfig().weight_problem(1.0) is None
        True
        >>> ProcessRewardConfig(step_cost=0.02).weight_problem(1.0)
        'min_gain / (score_max - score_min) (0.0278) must be >= process_weight x (redundancy_penalty + step_cost) (0.04), so a step that raises the answer by more than min_gain raises the total'
        """
        need = process_weight * (self.redundancy_penalty + self.step_cost)
        if self.min_gain / self.score_span < need:
            return (f"min_gain / (score_max - score_min) ({self.min_gain / self.score_span:.3g}) must be >= "
                    f"process_weight x (redundancy_penalty + step_cost) ({need:.3g}), so a step that raises the "
                    f"answer by more than min_gain raises the total")
        return None

    @property
    def score_span(self) -> float:
        """Width of the judge scale (9 for 1-10)."""
        return self.score_max - self.score_min


def normalise_score(score: float, cfg: ProcessRewardConfig) -> float:
    """Map a judge score to [0, 1]: ``(s - score_min) / (score_max - score_min)``, clipped.

    >>> normalise_score(10, ProcessRewardConfig()), normalise_score(1, ProcessRewardConfig())
    (1.0, 0.0)
    """
    return min(1.0, max(0.0, (score - cfg.score_min) / cfg.score_span))


@dataclass(frozen=True)
class VersionReward:
    """The unweighted process reward of one version (the draft or a step's revision).

    ``kind``: ``draft`` (the anchor), ``improved`` (credited), ``redundant`` (did not beat the
    last credited version by more than ``min_gain``, or was empty / a duplicate), ``worsened``
    (a redundant step scored below the best earlier version) or ``no_draft`` (a step with no
    scored draft before it). ``gain`` is the (answer-capped) score minus the last credited
    level (0 where there is none).
    """

    kind: str
    gain: float
    reward: float


def version_rewards(
    scores: Sequence[float | None], cfg: ProcessRewardConfig, has_draft: bool = True,
    answer: float | None = None,
) -> list[VersionReward]:
    """Process reward of each version against the last credited version, capped at the answer.

    Args:
        scores: Judge score (1-10) of each version in order: the draft (if ``has_draft``),
            then each step's revision; None for a version that is redundant without a judge
            call (empty, or equal to an earlier version) or an empty draft.
        cfg: Reward configuration.
        has_draft: Whether ``scores[0]`` is a draft (else every entry is a step).
        answer: Judge score of the final answer. Each version counts at most at this level, so
            a version better than the answer earns nothing beyond it (None: no cap, as for
            an SFT trajectory whose answer is its last kept version).

    Returns:
        One :class:`VersionReward` per score. The draft anchor plus the credited gains is
        ``n(level of the last credited version) <= n(answer)``.

    >>> [round(v.reward, 4) for v in version_rewards([6, 8, 5, 8, 8.5], ProcessRewardConfig())]
    [0.5556, 0.2172, -0.025, -0.025, 0.0506]
    >>> [round(v.reward, 4) for v in version_rewards([6, 10], ProcessRewardConfig(), answer=8)]
    [0.5556, 0.2172]
    """
    cap = cfg.score_max if answer is None else _clamp(answer, cfg)
    out, level, best = [], None, None  # level: the last credited version's (capped) score
    for k, score in enumerate(scores):
        if score is not None:  # a judge outside its scale must not break the bound
            score = _clamp(score, cfg)
        if k == 0 and has_draft:
            level, best = (None, None) if score is None else (min(score, cap), score)
            out.append(VersionReward("draft", 0.0, 0.0 if level is None else normalise_score(level, cfg)))
            continue
        gain = 0.0 if level is None or score is None else min(score, cap) - level
        if level is None:
            kind = "no_draft"
        elif score is not None and gain > cfg.min_gain:
            kind = "improved"
        else:
            kind = "worsened" if score is not None and best is not None and score < best else "redundant"
        if kind == "improved":
            reward = gain / cfg.score_span - cfg.step_cost
            level = min(score, cap)
        else:  # a redundant step never raises the reference: small real gains add up until credited
            reward = -(cfg.redundancy_penalty + cfg.step_cost)
        if score is not None and kind != "no_draft":
            best = score if best is None else max(best, score)
        out.append(VersionReward(kind, gain, reward))
    return out


def _clamp(score: float, cfg: ProcessRewardConfig) -> float:
    return min(cfg.score_max, max(cfg.score_min, score))


def completion_reward(
    version_scores: Sequence[float | None], answer: float, cfg: ProcessRewardConfig, process_weight: float
) -> float:
    """Total reward of a well-formed completion: ``n(answer) + lambda x sum of its version rewards``.

    What :func:`token_rewards` spreads over the tokens (without KL). ``version_scores[0]`` is the draft.

    >>> round(completion_reward([6, 8], 8, ProcessRewardConfig(), process_weight=0.5), 4)
    1.1642
    """
    process = sum(v.reward for v in version_rewards(version_scores, cfg, answer=answer))
    return normalise_score(answer, cfg) + process_weight * process


def last_useful_version(scores: Sequence[float | None], cfg: ProcessRewardConfig) -> int:
    """Index of the last version that is the draft or an improving step (what SFT data should end at).

    Steps after it are redundant by :func:`version_rewards`: a trajectory cut there teaches
    only reflections that the process reward pays for (the cut version becomes the answer,
    and no earlier version is above it by more than ``min_gain``, so the answer cap changes nothing).

    >>> last_useful_version([5, 7, 7.1, 6], ProcessRewardConfig())
    1
    """
    kinds = [v.kind for v in version_rewards(scores, cfg)]
    return max(i for i, kind in enumerate(kinds) if kind in ("draft", "improved")) if kinds else 0


def reflection_value_table(
    cfg: ProcessRewardConfig, process_weight: float, p_improved: float = 0.55, p_worsened: float = 0.10,
    gain: float = 0.5, draft_score: float = 6.0,
) -> str:
    """Expected reward of one more reflection->revision step, from :func:`completion_reward`.

    The step's revision becomes the answer (an honest trajectory answers with its last
    version), so the total's change is the outcome's change plus lambda x the step reward.

    Args:
        cfg: Reward configuration.
        process_weight: Lambda (``ppo.process_weight``), for the ``x lambda`` and ``total`` columns.
        p_improved: Share of steps that raise the score by ``gain`` (paper: > 55%).
        p_worsened: Share that lower it by ``gain`` (paper: ~10%); the rest change nothing.
        gain: Typical change of the mean criterion score (1-10 scale).
        draft_score: Score of the version the step starts from.

    Returns:
        A small table (see the module docstring).
    """
    before = completion_reward([draft_score], draft_score, cfg, process_weight)

    def step(after: float | None) -> tuple[float, float]:
        answer = draft_score if after is None else after
        reward = version_rewards([draft_score, after], cfg, answer=answer)[1].reward
        return reward, completion_reward([draft_score, after], answer, cfg, process_weight) - before

    rows = [(f"improved by {gain:g}", p_improved, *step(draft_score + gain)),
            ("unchanged", 1 - p_improved - p_worsened, *step(draft_score)),
            (f"worsened by {gain:g}", p_worsened, *step(draft_score - gain))]
    expected = [sum(row[2 + j] * row[1] for row in rows) for j in range(2)]
    lines = ["step outcome        share  step reward  x lambda    total"]
    lines += [f"{name:<20}{p:>5.2f}{r:>+13.4f}{process_weight * r:>+10.4f}{t:>+9.4f}" for name, p, r, t in rows]
    lines.append(f"{'expected (honest)':<25}{expected[0]:>+13.4f}{process_weight * expected[0]:>+10.4f}"
                 f"{expected[1]:>+9.4f}")
    redundant, total = step(None)
    lines.append(f"{'redundant (duplicate)':<25}{redundant:>+13.4f}{process_weight * redundant:>+10.4f}{total:>+9.4f}")
    return "\n".join(lines)


def _token_at(token_offsets: Sequence[tuple[int, int]], char_end: int) -> int:
    """Index of the token that covers the character just before ``char_end`` (else the last)."""
    for i, (_, end) in enumerate(token_offsets):
        if end >= char_end:
            return i
    return len(token_offsets) - 1


def token_rewards(
    token_offsets: Sequence[tuple[int, int]], result: dict, cfg: ProcessRewardConfig, process_weight: float
) -> list[float]:
    """Spread one completion's reward over its tokens.

    Args:
        token_offsets: ``(start, end)`` character span of each response token in the
            completion text (a special token such as EOS has an empty span at the end).
        result: The completion's entry from :func:`process_reward_fn`.
        cfg: Reward configuration (the score scale, ``format_penalty``).
        process_weight: Lambda (``ppo.process_weight``); 0 = the outcome-only ablation.

    Returns:
        One reward per token: ``process_weight`` x each version's reward on the token that
        closes the version (``</draft>`` / ``</revision>``), plus the normalised outcome, or
        ``-format_penalty`` for a malformed completion, on the last token; 0 elsewhere.

    >>> token_rewards([(0, 1), (1, 2), (2, 3)], {"outcome": 10.0, "rewards": [(1, 0.5)]}, ProcessRewardConfig(), 0.5)
    [0.25, 0.0, 1.0]
    """
    if not token_offsets:
        return []
    rewards = [0.0] * len(token_offsets)
    if result.get("format_violation") or result["outcome"] is None:
        rewards[-1] = -cfg.format_penalty
        return rewards
    if process_weight:
        for end, reward in result["rewards"]:
            rewards[_token_at(token_offsets, end)] += process_weight * reward
    rewards[-1] += normalise_score(result["outcome"], cfg)
    return rewards


def completion_text(completion: Any) -> str:
    """The text of a completion: a string, or (TRL conversational) a list of chat messages.

    Anything else (None, a number, messages that are not dicts) reads as ``""`` or is skipped,
    so a malformed completion becomes a format violation instead of an exception.
    """
    if isinstance(completion, str):
        return completion
    if not isinstance(completion, (list, tuple)):
        return ""
    return "".join(_content(m) for m in completion if isinstance(m, dict) and m.get("role", "assistant") == "assistant")


def prompt_text(prompt: Any) -> str:
    """The text of a prompt: a string, or the last user message of a chat conversation."""
    if isinstance(prompt, str):
        return prompt
    if not isinstance(prompt, (list, tuple)) or not prompt:
        return "" if prompt is None else str(prompt)
    messages = [m for m in prompt if isinstance(m, dict)]
    users = [_content(m) for m in messages if m.get("role") == "user"]
    return users[-1] if users else (_content(messages[-1]) if messages else "")


def _content(message: dict) -> str:
    content = message.get("content", "")
    if isinstance(content, list):  # multimodal-style parts: keep the text parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return content if isinstance(content, str) else ""


def _judge_unique(
    judge_fn: JudgeFn, requests: list[tuple[int, str]], prompts: list[str], rubrics: list[Any]
) -> dict[tuple[int, str], float | None]:
    """Score each distinct (prompt index, text) once, in one judge call (texts are non-empty).

    A score that is None or not a finite number (the judge could not score the text) is None.
    """
    todo = list(dict.fromkeys(requests))
    if not todo:
        return {}
    got = judge_fn([prompts[i] for i, _ in todo], [t for _, t in todo], [rubrics[i] for i, _ in todo])
    if len(got) != len(todo):
        raise ValueError(f"judge_fn returned {len(got)} scores for {len(todo)} texts")
    return {r: _finite(s) for r, s in zip(todo, got)}


def _finite(score: Any) -> float | None:
    try:
        value = float(score)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _versions(text: str) -> tuple[list[tuple[str, str, int]], int]:
    """``(kind, text, end offset)`` of the draft and each revision of a well-formed completion, and its reflections.

    Version texts are stripped of outer whitespace: the unit of duplicate detection and judging.
    """
    segments = [(seg.kind, seg.text.strip(), end)
                for seg, (_, _, end) in zip(parse(text).segments, segment_spans(text))]
    versions = [s for s in segments if s[0] in ("draft", "revision")]
    return versions, sum(kind == "reflection" for kind, _, _ in segments)


def _violation(text: str, truncated: bool, cfg: ProcessRewardConfig) -> str | None:
    """Why a completion is not judged (truncated, malformed, too many steps), or None."""
    if truncated:
        return "truncated at max_new_tokens"
    error = format_error(text)
    if error is None and split_thinking(text)[0].count("</revision>") > cfg.max_steps:
        return f"more than max_steps ({cfg.max_steps}) reflection->revision steps"
    return error


def process_reward_fn(judge_fn: JudgeFn, cfg: ProcessRewardConfig | None = None) -> Callable[..., list[dict]]:
    """Build the PPO reward: check the format, judge every version and the final answer.

    All judge calls of a batch go to ``judge_fn`` at once, each distinct (prompt, text) once
    (a revision equal to the answer is one call). Empty revisions and revisions equal to an
    earlier version (exact text, outer whitespace aside) are redundant without a call; any
    other revision is judged (a paragraph break or a capitalisation fix is a change). A
    truncated or malformed completion, or one with more than ``max_steps`` steps, is not judged
    at all. A text the judge returns no finite score for counts as ``score_min`` (the worst).

    Args:
        judge_fn: ``judge_fn(prompts, texts, rubrics) -> list[float]`` (1-10 scores).
        cfg: Reward configuration.

    Returns:
        ``fn(prompts, completions, rubrics=None, truncated=None, **kwargs) -> list[dict]``, one
        dict per completion: ``outcome`` (judge score of the final answer, or None),
        ``format_violation`` (None or the reason), ``rewards`` (``[(char offset closing the
        version, unweighted reward), ...]``), ``process`` (their sum), ``version_scores``,
        ``n_reflections``, ``n_steps``, ``n_improved``, ``n_redundant`` (steps not credited,
        including worsened ones), ``n_worsened`` and ``n_unscored`` (texts without a score).

    >>> fake_judge = lambda prompts, texts, rubrics: [min(10.0, len(t)) for t in texts]
    >>> text = ("<think>\\n<draft>\\nab\\n</draft>\\n<reflection>\\nlonger\\n</reflection>\\n"
    ...         "<revision>\\nabcd\\n</revision>\\n</think>\\nabcd")
    >>> res = process_reward_fn(fake_judge)(["Write."], [text])[0]
    >>> res["outcome"], res["version_scores"], round(res["process"], 4), res["n_improved"]
    (4.0, [2.0, 4.0], 0.3283, 1)
    """
    cfg = cfg or ProcessRewardConfig()

    def process_reward(prompts: list[Any], completions: list[Any], rubrics: list[Any] | None = None,
                       truncated: Sequence[bool] | None = None, **kwargs):
        texts = [completion_text(c) for c in completions]
        prompt_strs = [prompt_text(p) for p in prompts]
        rubrics = list(rubrics) if rubrics is not None else [None] * len(texts)
        truncated = list(truncated) if truncated is not None else [False] * len(texts)
        violations = [_violation(t, bool(tr), cfg) for t, tr in zip(texts, truncated)]
        answers = [split_thinking(t)[1] for t in texts]
        plans, requests = [], []
        for i, text in enumerate(texts):
            if violations[i]:
                plans.append(None)
                continue
            versions, n_reflections = _versions(text)
            seen, judged = set(), []
            for _, version, _ in versions:
                judged.append(bool(version) and version not in seen)
                seen.add(version)
            plans.append((versions, judged, n_reflections))
            requests += [(i, answers[i])] + [(i, v) for (_, v, _), j in zip(versions, judged) if j]
        scores = _judge_unique(judge_fn, requests, prompt_strs, rubrics)
        out = []
        for i, plan in enumerate(plans):
            if plan is None:
                out.append({"outcome": None, "format_violation": violations[i], "rewards": [], "process": 0.0,
                            "version_scores": [], "n_reflections": texts[i].count("<reflection>"), "n_steps": 0,
                            "n_improved": 0, "n_redundant": 0, "n_worsened": 0, "n_unscored": 0})
                continue
            versions, judged, n_reflections = plan
            raw = [scores[(i, v)] if j else None for (_, v, _), j in zip(versions, judged)]
            unscored = [j and r is None for r, j in zip(raw, judged)] + [scores[(i, answers[i])] is None]
            vscores = [cfg.score_min if bad else r for r, bad in zip(raw, unscored)]
            outcome = scores[(i, answers[i])]
            outcome = cfg.score_min if outcome is None else outcome
            vr = version_rewards(vscores, cfg, has_draft=versions[0][0] == "draft", answer=outcome)
            steps = [r for r in vr if r.kind != "draft"]
            out.append({
                "outcome": outcome,
                "format_violation": None,
                "rewards": [(end, r.reward) for (_, _, end), r in zip(versions, vr)],
                "process": float(sum(r.reward for r in vr)),
                "version_scores": vscores,
                "n_reflections": n_reflections,
                "n_steps": len(steps),
                "n_improved": sum(r.kind == "improved" for r in steps),
                "n_redundant": sum(r.kind != "improved" for r in steps),
                "n_worsened": sum(r.kind == "worsened" for r in steps),
                "n_unscored": sum(unscored),
            })
        return out

    return process_reward


def outcome_reward_fn(judge_fn: JudgeFn, cfg: ProcessRewardConfig | None = None) -> Callable[..., list[float]]:
    """Build the sequence-level reward for TRL's GRPOTrainer (``reward_funcs=[...]``).

    The same format rule as :func:`process_reward_fn`: a malformed or truncated completion, or
    one with more than ``max_steps`` steps, is not judged and gets ``-format_penalty``; an
    answer the judge returns no finite score for counts as ``score_min``.

    Args:
        judge_fn: ``judge_fn(prompts, texts, rubrics) -> list[float]`` (1-10 scores).
        cfg: Reward configuration (the score scale, ``max_steps`` and ``format_penalty``).

    Returns:
        ``outcome_reward(prompts, completions, rubrics=None, truncated=None, **kwargs) -> list[float]``:
        the final answer's judge score normalised to [0, 1]; completions may be strings or
        lists of chat messages, as TRL passes them.

    >>> fn = outcome_reward_fn(lambda prompts, texts, rubrics: [7.0] * len(texts))
    >>> text = "<think>\\n<draft>\\nHi\\n</draft>\\n</think>\\nHi"
    >>> fn(prompts=["Write."], completions=[[{"role": "assistant", "content": text}]])
    [0.6666666666666666]
    >>> fn(prompts=["Write."], completions=["<think>x</think>Hi"])
    [-1.0]
    """
    cfg = cfg or ProcessRewardConfig()

    def outcome_reward(prompts: list[Any], completions: list[Any], rubrics: list[Any] | None = None,
                       truncated: Sequence[bool] | None = None, **kwargs):
        texts = [completion_text(c) for c in completions]
        truncated = list(truncated) if truncated is not None else [False] * len(texts)
        ok = [_violation(t, bool(tr), cfg) is None for t, tr in zip(texts, truncated)]
        answers = [split_thinking(t)[1] for t in texts]
        prompt_strs = [prompt_text(p) for p in prompts]
        rubrics = list(rubrics) if rubrics is not None else [None] * len(texts)
        scores = _judge_unique(judge_fn, [(i, a) for i, a in enumerate(answers) if ok[i]], prompt_strs, rubrics)

        def reward(i: int, answer: str) -> float:
            if not ok[i]:
                return -cfg.format_penalty
            score = scores[(i, answer)]
            return normalise_score(cfg.score_min if score is None else score, cfg)

        return [reward(i, a) for i, a in enumerate(answers)]

    return outcome_reward
