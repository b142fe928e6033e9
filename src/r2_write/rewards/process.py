"""The R2-Write reward: outcome rubric score of the final answer + lambda x process reward.

A completion is a thinking trajectory (see :mod:`r2_write.trajectory`). Its
reflection->revision *steps* are judged by scoring the version before the step (the draft
or the previous revision) and the version after it (the step's revision):

* a step that raises the score by more than ``min_gain`` earns ``clip(delta / 9, -1, 1)``
  (``delta`` on the 1-10 judge scale, so a full-scale jump earns 1);
* a step that does not (redundant) or that lowers the score earns ``-redundancy_penalty``.

The outcome is the judge score of the final answer (the text after ``</think>``),
normalised to [0, 1] by ``(s - 1) / 9``. In PPO the rewards are *token-level*
(:func:`token_rewards`): each step's reward, times ``process_weight``, sits on the token that
ends the step's revision, and the outcome on the last token.

Two reward builders, both returning callables with the reward contract ``fn(prompts, completions, **kwargs)``:

* :func:`process_reward_fn` (PPO): one dict per completion with the outcome and step scores;
* :func:`outcome_reward_fn` (TRL GRPO baseline): one float per completion.

``judge_fn(prompts, texts, rubrics) -> list[float]`` scores each text for its prompt on the
1-10 scale (``rubrics`` holds one entry per text, each may be None).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from r2_write.trajectory import parse, segment_spans, split_thinking

JudgeFn = Callable[[list[str], list[str], list[Any]], list[float]]


@dataclass(frozen=True)
class ProcessRewardConfig:
    """How judge scores become rewards."""

    process_weight: float = field(
        default=0.5, metadata={"help": "Lambda: weight of the step rewards; 0 = outcome-only ablation."}
    )
    min_gain: float = field(
        default=0.0, metadata={"help": "A step must raise the score by more than this to count as a gain."}
    )
    redundancy_penalty: float = field(
        default=0.2, metadata={"help": "Reward (negated) of a step that does not raise the score."}
    )
    score_min: float = field(default=1.0, metadata={"help": "Lowest judge score (maps to outcome 0)."})
    score_max: float = field(default=10.0, metadata={"help": "Highest judge score (maps to outcome 1)."})

    def __post_init__(self) -> None:
        if self.process_weight < 0:
            raise ValueError(f"process_weight must be >= 0, got {self.process_weight}")
        if self.redundancy_penalty < 0:
            raise ValueError(f"redundancy_penalty must be >= 0, got {self.redundancy_penalty}")
        if self.score_max <= self.score_min:
            raise ValueError(f"score_max ({self.score_max}) must exceed score_min ({self.score_min})")

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


def step_rewards(
    scores_before: Sequence[float], scores_after: Sequence[float], cfg: ProcessRewardConfig
) -> list[float]:
    """Reward of each reflection->revision step from the judge scores around it.

    Args:
        scores_before: Judge score (1-10) of the version each step starts from.
        scores_after: Judge score of the step's revision.
        cfg: Reward configuration.

    Returns:
        One reward per step: ``clip(delta / span, -1, 1)`` when ``delta > min_gain``,
        else ``-redundancy_penalty`` (unweighted; ``process_weight`` is applied later).

    >>> step_rewards([4, 6, 7], [6, 6, 5], ProcessRewardConfig())
    [0.2222222222222222, -0.2, -0.2]
    """
    if len(scores_before) != len(scores_after):
        raise ValueError(f"{len(scores_before)} scores before but {len(scores_after)} after")
    rewards = []
    for before, after in zip(scores_before, scores_after):
        delta = after - before
        if delta > cfg.min_gain:
            rewards.append(min(1.0, max(-1.0, delta / cfg.score_span)))
        else:
            rewards.append(-cfg.redundancy_penalty)
    return rewards


def step_end_offsets(text: str) -> list[int]:
    """Character offset just past the ``</revision>`` that closes each reflection->revision step.

    The steps are those of ``parse(text, strict=False).steps()``: a completion that does not
    start with ``<think>`` or never closes it has none.

    >>> from r2_write.trajectory import Segment, Trajectory, render
    >>> text = render(Trajectory([Segment("draft", "d"), Segment("reflection", "r"),
    ...                           Segment("revision", "v")], answer="v"))
    >>> [text[:end][-11:] for end in step_end_offsets(text)]
    ['</revision>']
    """
    if not parse(text, strict=False).steps():
        return []
    spans = segment_spans(text)
    return [
        spans[i + 1][2]
        for i in range(len(spans) - 1)
        if spans[i][0] == "reflection" and spans[i + 1][0] == "revision"
    ]


def _token_at(token_offsets: Sequence[tuple[int, int]], char_end: int) -> int:
    """Index of the token that covers the character just before ``char_end`` (else the last)."""
    for i, (_, end) in enumerate(token_offsets):
        if end >= char_end:
            return i
    return len(token_offsets) - 1


def token_rewards(
    text: str,
    token_offsets: Sequence[tuple[int, int]],
    outcome_score: float,
    step_scores: Sequence[tuple[float, float]],
    cfg: ProcessRewardConfig,
) -> list[float]:
    """Spread a completion's rewards over its tokens.

    Args:
        text: The completion text (as decoded from the response tokens).
        token_offsets: ``(start, end)`` character span in ``text`` of each response token
            (a special token such as EOS has an empty span at the end).
        outcome_score: Judge score (1-10) of the final answer.
        step_scores: ``(before, after)`` judge scores of each reflection->revision step.
        cfg: Reward configuration.

    Returns:
        One reward per token: ``process_weight * step_reward`` on the token that ends each
        step's ``</revision>``, the normalised outcome added on the last token, 0 elsewhere.

    >>> cfg = ProcessRewardConfig(process_weight=0.5)
    >>> token_rewards("abc", [(0, 1), (1, 2), (2, 3)], 10.0, [], cfg)
    [0.0, 0.0, 1.0]
    """
    if not token_offsets:
        return []
    rewards = [0.0] * len(token_offsets)
    ends = step_end_offsets(text)
    if len(ends) != len(step_scores):
        raise ValueError(f"text has {len(ends)} reflection->revision steps but {len(step_scores)} step scores")
    if step_scores and cfg.process_weight:
        before, after = zip(*step_scores)
        for end, reward in zip(ends, step_rewards(before, after, cfg)):
            rewards[_token_at(token_offsets, end)] += cfg.process_weight * reward
    rewards[-1] += normalise_score(outcome_score, cfg)
    return rewards


def completion_text(completion: Any) -> str:
    """The text of a completion: a string, or (TRL conversational) a list of chat messages."""
    if isinstance(completion, str):
        return completion
    return "".join(_content(m) for m in completion if m.get("role", "assistant") == "assistant")


def prompt_text(prompt: Any) -> str:
    """The text of a prompt: a string, or the last user message of a chat conversation."""
    if isinstance(prompt, str):
        return prompt
    users = [_content(m) for m in prompt if m.get("role") == "user"]
    return users[-1] if users else _content(prompt[-1])


def _content(message: dict) -> str:
    content = message.get("content", "")
    if isinstance(content, list):  # multimodal-style parts: keep the text parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def _judge_unique(
    judge_fn: JudgeFn,
    requests: list[tuple[int, str]],
    prompts: list[str],
    rubrics: list[Any],
    cfg: ProcessRewardConfig,
) -> dict[tuple[int, str], float]:
    """Score each distinct (prompt index, text) once, in one judge call; empty texts get score_min."""
    todo = list(dict.fromkeys(r for r in requests if r[1].strip()))
    scores = {r: cfg.score_min for r in requests if not r[1].strip()}
    if todo:
        got = judge_fn([prompts[i] for i, _ in todo], [t for _, t in todo], [rubrics[i] for i, _ in todo])
        if len(got) != len(todo):
            raise ValueError(f"judge_fn returned {len(got)} scores for {len(todo)} texts")
        scores.update({r: float(s) for r, s in zip(todo, got)})
    return scores


def _steps_before_after(text: str) -> tuple[list[tuple[str, str]], int]:
    """(version before, revision) of each step, and the number of reflections."""
    traj = parse(text, strict=False)
    pairs, current = [], ""
    segs = traj.segments
    for i, seg in enumerate(segs):
        if seg.kind == "reflection" and i + 1 < len(segs) and segs[i + 1].kind == "revision":
            pairs.append((current, segs[i + 1].text))
        if seg.kind in ("draft", "revision"):
            current = seg.text
    return pairs, sum(s.kind == "reflection" for s in segs)


def process_reward_fn(judge_fn: JudgeFn, cfg: ProcessRewardConfig | None = None) -> Callable[..., list[dict]]:
    """Build the PPO reward: judge each completion's steps and final answer.

    The version before a step is the latest draft or revision preceding its reflection (the
    ``Trajectory.versions()`` chain for a well-formed trajectory); the version after is the
    step's revision. All judge calls of a batch go to ``judge_fn`` at once, each distinct
    (prompt, text) once (a revision is the "after" of one step and the "before" of the next);
    an empty text scores ``score_min`` without a call.

    Args:
        judge_fn: ``judge_fn(prompts, texts, rubrics) -> list[float]`` (1-10 scores).
        cfg: Reward configuration (for ``score_min`` on empty texts and the ``process`` sum).

    Returns:
        ``fn(prompts, completions, rubrics=None, **kwargs) -> list[dict]``, one dict per
        completion: ``outcome`` (judge score of the final answer, 1-10), ``step_scores``
        (``[(before, after), ...]``), ``process`` (sum of unweighted step rewards) and
        ``n_reflections``.

    >>> fake_judge = lambda prompts, texts, rubrics: [min(10.0, len(t)) for t in texts]
    >>> fn = process_reward_fn(fake_judge)
    >>> text = ("<think>\\n<draft>\\nab\\n</draft>\\n<reflection>\\nlonger\\n</reflection>\\n"
    ...         "<revision>\\nabcd\\n</revision>\\n</think>\\nabcd")
    >>> fn(["Write."], [text])[0]
    {'outcome': 4.0, 'step_scores': [(2.0, 4.0)], 'process': 0.2222222222222222, 'n_reflections': 1}
    """
    cfg = cfg or ProcessRewardConfig()

    def process_reward(prompts: list[Any], completions: list[Any], rubrics: list[Any] | None = None, **kwargs):
        texts = [completion_text(c) for c in completions]
        prompt_strs = [prompt_text(p) for p in prompts]
        rubrics = list(rubrics) if rubrics is not None else [None] * len(texts)
        parsed = [_steps_before_after(t) for t in texts]
        answers = [split_thinking(t)[1] for t in texts]
        requests = [(i, a) for i, a in enumerate(answers)]
        for i, (pairs, _) in enumerate(parsed):
            requests += [(i, v) for pair in pairs for v in pair]
        scores = _judge_unique(judge_fn, requests, prompt_strs, rubrics, cfg)
        out = []
        for i, (pairs, n_reflections) in enumerate(parsed):
            step_scores = [(scores[(i, b)], scores[(i, a)]) for b, a in pairs]
            rewards = step_rewards([b for b, _ in step_scores], [a for _, a in step_scores], cfg)
            out.append(
                {
                    "outcome": scores[(i, answers[i])],
                    "step_scores": step_scores,
                    "process": float(sum(rewards)),
                    "n_reflections": n_reflections,
                }
            )
        return out

    return process_reward


def outcome_reward_fn(judge_fn: JudgeFn, cfg: ProcessRewardConfig | None = None) -> Callable[..., list[float]]:
    """Build the sequence-level reward for TRL's GRPOTrainer (``reward_funcs=[...]``).

    Args:
        judge_fn: ``judge_fn(prompts, texts, rubrics) -> list[float]`` (1-10 scores).
        cfg: Reward configuration (only the score scale is used).

    Returns:
        ``outcome_reward(prompts, completions, rubrics=None, **kwargs) -> list[float]``: the
        final answer's judge score normalised to [0, 1]; completions may be strings or lists of
        chat messages, as TRL passes them.

    >>> fn = outcome_reward_fn(lambda prompts, texts, rubrics: [7.0] * len(texts))
    >>> fn(prompts=["Write."], completions=[[{"role": "assistant", "content": "<think>x</think>Hi"}]])
    [0.6666666666666666]
    """
    cfg = cfg or ProcessRewardConfig()

    def outcome_reward(prompts: list[Any], completions: list[Any], rubrics: list[Any] | None = None, **kwargs):
        answers = [split_thinking(completion_text(c))[1] for c in completions]
        prompt_strs = [prompt_text(p) for p in prompts]
        rubrics = list(rubrics) if rubrics is not None else [None] * len(answers)
        scores = _judge_unique(judge_fn, list(enumerate(answers)), prompt_strs, rubrics, cfg)
        return [normalise_score(scores[(i, a)], cfg) for i, a in enumerate(answers)]

    return outcome_reward
