"""The reward's properties over random trajectories, through the trainer's own token path.

Each case is a random trajectory: a draft and 0-12 reflection->revision steps whose versions
are new texts (scores uniform on 1-10, or on the 0.2 grid a mean of five integer criteria
moves on), texts the judge cannot score (it returns None or NaN: they count as the lowest
score), empty revisions or exact duplicates of an earlier version (random outer whitespace),
and an answer that is the last version, an earlier one or a new text. A stub judge knows each
text's score. Totals come from ``tests/rewards/trainer_path.py`` (SmolLM2 tokens ->
``process_reward_fn`` -> ``token_scores`` -> ``compute_rewards``) at lambda 0.5 and 1. The
cases are seeded, so a failure names a reproducible case.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import pytest

from r2_write.rewards.process import ProcessRewardConfig, normalise_score, process_reward_fn
from tests.rewards.trainer_path import trainer_totals

CFG = ProcessRewardConfig()
LAMBDAS = (0.5, 1.0)
CASES = 150  # per seed and score scale
REFLECTION = "The draft could be sharper; I will revise it."


class Judge:
    """Scores known texts; records every text it is asked to score. An unknown text is a test bug."""

    def __init__(self, scores: dict[str, float]):
        self.scores = scores
        self.judged: list[str] = []

    def __call__(self, prompts, texts, rubrics):
        self.judged += texts
        return [self.scores[t] for t in texts]


@dataclass
class Case:
    versions: list[str]  # the draft, then each revision ("" = empty)
    answer: str
    scores: dict[str, float] = field(default_factory=dict)
    grid: bool = False

    def render(self) -> str:
        parts = [f"<draft>\n{self.versions[0]}\n</draft>"]
        for v in self.versions[1:]:
            parts += [f"<reflection>\n{REFLECTION}\n</reflection>", f"<revision>\n{v}\n</revision>"]
        return "<think>\n" + "\n".join(parts) + "\n</think>\n" + self.answer

    def value(self, text: str) -> float:
        """The score the reward uses for a judged text: an unscored one counts as score_min."""
        score = self.scores[text.strip()]
        return CFG.score_min if score is None or math.isnan(score) else score

    def score_of(self, text: str) -> float | None:
        return self.value(text) if text.strip() else None

    def best(self) -> float | None:
        scored = [s for s in map(self.score_of, self.versions) if s is not None]
        return max(scored) if scored else None

    def totals(self) -> tuple[dict[float, float], dict, Judge]:
        judge = Judge(self.scores)
        totals, res = trainer_totals(self.render(), judge, CFG, LAMBDAS)
        return totals, res, judge

    def new_text(self, rng: random.Random, score: float | None = None, unscored: bool = False) -> str:
        text = f"Take {len(self.scores)}: the harbour at dawn, gulls and rope, {rng.randrange(10**6)}."
        if unscored:
            self.scores[text] = rng.choice([None, math.nan])
        else:
            self.scores[text] = self.draw(rng) if score is None else score
        return text

    def draw(self, rng: random.Random, low: float = 1.0) -> float:
        """A score in [low, 10]: on the 0.2 grid (rounded to 1 decimal) or continuous."""
        if self.grid:
            steps = [k for k in range(46) if 1 + 0.2 * k >= low - 1e-9]
            return round(1 + 0.2 * rng.choice(steps), 1)
        return rng.uniform(low, 10.0)


def padded(rng: random.Random, text: str) -> str:
    return rng.choice(["", " ", "  ", "\n", "\t"]) + text + rng.choice(["", " ", "\n", "\n\n"])


def random_case(rng: random.Random, grid: bool, max_steps: int = 12) -> Case:
    case = Case([], "", grid=grid)
    for k in range(rng.randint(0, max_steps) + 1):
        r = rng.random()
        earlier = [v for v in case.versions if v.strip()]
        if r < (0.04 if k == 0 else 0.15):
            case.versions.append("")
        elif k > 0 and r < 0.3 and earlier:
            case.versions.append(padded(rng, rng.choice(earlier).strip()))
        else:
            case.versions.append(case.new_text(rng, unscored=rng.random() < 0.08))
    r = rng.random()
    nonempty = [v.strip() for v in case.versions if v.strip()]
    if r < 0.4 and nonempty:
        case.answer = nonempty[-1]
    elif r < 0.6 and nonempty:
        case.answer = rng.choice(nonempty)
    else:
        case.answer = case.new_text(rng, unscored=rng.random() < 0.05)
    return case


def cases(seed: int, grid: bool, n: int = CASES):
    rng = random.Random(seed * 2 + grid)
    for i in range(n):
        yield i, rng, random_case(rng, grid)


def well_formed(res: dict) -> bool:
    return res["format_violation"] is None


SCALES = [pytest.param(False, id="continuous"), pytest.param(True, id="grid")]


@pytest.mark.parametrize("grid", SCALES)
@pytest.mark.parametrize("seed", range(2))
def test_ceiling_the_answer_bounds_the_total(seed, grid):
    """outcome + lambda x process <= (1 + lambda) x n(answer); anchor + credited gains <= n(answer)."""
    checked = 0
    for i, _, case in cases(seed, grid):
        totals, res, _ = case.totals()
        if not well_formed(res):
            assert len(case.versions) - 1 > CFG.max_steps, (i, res["format_violation"])
            assert all(t == pytest.approx(-CFG.format_penalty) for t in totals.values())
            continue
        answer = normalise_score(case.value(case.answer), CFG)
        for lam, total in totals.items():
            assert total <= (1 + lam) * answer + 1e-9, (i, lam, case)
        costs = res["n_steps"] * CFG.step_cost + res["n_redundant"] * CFG.redundancy_penalty
        anchor_plus_gains = res["process"] + costs
        assert anchor_plus_gains <= answer + 1e-9, (i, case)
        # ... and nothing honest is lost: credited up to within min_gain of the best version the answer allows
        if case.score_of(case.versions[0]) is not None:
            reachable = normalise_score(min(case.best(), case.value(case.answer)), CFG)
            assert anchor_plus_gains >= reachable - CFG.min_gain / CFG.score_span - 1e-9, (i, case)
        checked += 1
    assert checked > CASES // 2


@pytest.mark.parametrize("grid", SCALES)
@pytest.mark.parametrize("seed", range(2))
def test_no_free_step_at_any_length(seed, grid):
    """Appending a step that does not raise the best score lowers the total (same answer), at any length."""
    crossed = 0
    for i, rng, case in cases(seed, grid):
        before, res, _ = case.totals()
        if not well_formed(res):
            continue
        best = case.best()
        r = rng.random()
        if r < 0.25:
            extra = ""
        elif r < 0.5 or best is None:
            extra = padded(rng, rng.choice([v for v in case.versions if v.strip()] or [""]).strip())
        else:
            extra = case.new_text(rng, score=case.draw(rng) if rng.random() < 0.5 else best)
            case.scores[extra] = min(case.scores[extra], best)  # never above the best so far
        longer = Case(case.versions + [extra], case.answer, case.scores, grid)
        after, res_after, _ = longer.totals()
        for lam in LAMBDAS:
            assert after[lam] < before[lam] - 1e-9, (i, lam, longer)
        if not well_formed(res_after):
            assert res_after["format_violation"].startswith("more than max_steps"), (i, res_after)
            crossed += 1
    assert crossed > 0  # some cases crossed max_steps: the step past the cap costs too


@pytest.mark.parametrize("grid", SCALES)
@pytest.mark.parametrize("seed", range(2))
def test_reflection_pays_when_it_raises_the_answer(seed, grid):
    """A step whose revision becomes an answer better by more than min_gain raises the total."""
    checked = 0
    for i, rng, case in cases(seed, grid):
        best, hard = case.best(), rng.random() < 0.5
        if hard and not grid and best is not None and best > 1.1:
            # the hard case: a thinking version is a little better than the answer, and the new
            # revision beats the answer by just over min_gain, so it beats that version by less than
            # min_gain: the step itself is not credited and only the outcome's rise pays for it
            case.answer = case.new_text(rng, score=best - rng.uniform(0.0, 0.06))
        before, res, _ = case.totals()
        a = case.value(case.answer)
        if not well_formed(res) or len(case.versions) - 1 >= CFG.max_steps or a + CFG.min_gain >= 9.9:
            continue
        if hard and not grid:
            score = min(10.0, a + CFG.min_gain + rng.uniform(0.001, 0.03))
        else:
            score = case.draw(rng, low=a + CFG.min_gain + 0.01)
        better = case.new_text(rng, score=score)
        assert case.value(better) > a + CFG.min_gain
        longer = Case(case.versions + [padded(rng, better)], better, case.scores, grid)
        after, res_after, _ = longer.totals()
        assert well_formed(res_after)
        for lam in LAMBDAS:
            assert after[lam] > before[lam], (i, lam, longer)
        checked += 1
    assert checked > CASES // 3


@pytest.mark.parametrize("grid", SCALES)
def test_small_real_gains_add_up_and_are_credited(grid):
    """Steps each below min_gain are credited once their sum passes min_gain over the last credited version."""
    rng = random.Random(7 + grid)
    for i in range(CASES):
        case = Case([], "", grid=grid)
        score = case.draw(rng) if not grid else round(1 + 0.2 * rng.randint(0, 20), 1)
        scores = [score]
        for _ in range(rng.randint(1, CFG.max_steps)):
            inc = 0.2 if grid else rng.uniform(0.01, CFG.min_gain)
            scores.append(min(10.0, round(scores[-1] + inc, 6)))
        case.versions = [case.new_text(rng, s) for s in scores]
        case.answer = case.versions[-1]
        _, res, _ = case.totals()
        level = scores[0]  # expected: credited when the sum of small gains since the last credit passes min_gain
        credited = 0
        for s in scores[1:]:
            if s - level > CFG.min_gain:
                level, credited = s, credited + 1
        assert res["n_improved"] == credited, (i, scores)
        if scores[-1] - scores[0] > 2 * CFG.min_gain:
            assert credited >= 1
        anchor_plus_gains = res["process"] + res["n_steps"] * CFG.step_cost + res["n_redundant"] * CFG.redundancy_penalty
        assert anchor_plus_gains == pytest.approx(normalise_score(level, CFG))
        assert anchor_plus_gains >= normalise_score(scores[-1], CFG) - CFG.min_gain / CFG.score_span - 1e-9


@pytest.mark.parametrize("seed", range(2))
def test_duplicates_are_exact_texts_everything_else_is_judged(seed):
    rng = random.Random(100 + seed)
    for i in range(CASES):
        case = random_case(rng, grid=bool(seed), max_steps=CFG.max_steps - 1)
        earlier = [v.strip() for v in case.versions if v.strip()]
        if not earlier:
            continue
        source = rng.choice(earlier)
        variant = rng.choice([source.upper(), source.replace(" ", "  ", 1), source.replace(", ", ",\n\n", 1),
                              source.lower(), source + "."])
        case.scores.setdefault(variant, case.draw(rng))
        exact = Case(case.versions + [padded(rng, source)], case.answer, case.scores)
        _, res, judge = exact.totals()
        assert judge.judged.count(source) == 1 and len(judge.judged) == len(set(judge.judged)), (i, judge.judged)
        assert res["version_scores"][-1] is None  # redundant without a judge call
        near = Case(case.versions + [variant], case.answer, case.scores)
        _, res, judge = near.totals()
        if variant == source:
            continue
        assert variant in judge.judged, (i, variant)
        assert res["version_scores"][-1] == case.value(variant)


FRAGMENTS = ["<think>", "</think>", "<plan>", "</plan>", "<draft>", "</draft>", "<reflection>", "</reflection>",
             "<revision>", "</revision>", "<Revision>", "< draft >", "\n", " ", "The harbour.", "", "<", ">", "</",
             "é中", "<b>", "\x00"]


def _malformed(rng: random.Random) -> object:
    r = rng.random()
    if r < 0.7:
        return "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(0, 25)))
    if r < 0.8:  # a well-formed trajectory with one fragment inserted somewhere
        text = random_case(rng, grid=False, max_steps=3).render()
        at = rng.randrange(len(text) + 1)
        return text[:at] + rng.choice(FRAGMENTS) + text[at:]
    return rng.choice([None, 3, 2.5, b"<think>", {"content": "x"}, [], [None, 1],
                       [{"role": "assistant", "content": None}], [{"role": "assistant", "content": ["x", {"text": 1}]}],
                       [{"role": "assistant", "content": [{"type": "text", "text": "<think>"}]}]])


@pytest.mark.parametrize("seed", range(2))
def test_malformed_completions_never_raise_get_the_format_penalty_and_are_counted(seed):
    rng = random.Random(200 + seed)
    judge_scores: dict[str, float] = {}

    def judge(prompts, texts, rubrics):
        return [judge_scores.setdefault(t, rng.uniform(1, 10)) for t in texts]

    completions = [_malformed(rng) for _ in range(400)]
    truncated = [rng.random() < 0.1 for _ in completions]
    prompts = [rng.choice(["p", None, 7, [{"role": "user", "content": "p"}], [], [{"x": 1}]]) for _ in completions]
    results = process_reward_fn(judge, CFG)(prompts, completions, truncated=truncated)  # one batch: never raises
    assert len(results) == len(completions)
    violations = 0
    for c, tr, res in zip(completions, truncated, results):
        if res["format_violation"] is not None:  # what the trainer counts as reward/format_violations
            assert res["outcome"] is None and isinstance(res["format_violation"], str) and res["rewards"] == []
            violations += 1
        else:
            assert not tr and math.isfinite(res["outcome"]) and 1 <= res["outcome"] <= 10
    assert sum(r["outcome"] is None for r in results) == violations > len(completions) // 2
    for c, tr in list(zip(completions, truncated))[:120]:  # and through the token path
        if isinstance(c, str) and (c or not tr):  # a truncated response has at least one token
            totals, res = trainer_totals(c, judge, CFG, LAMBDAS, truncated=tr)
            if res["format_violation"] is not None:
                assert all(t == pytest.approx(-CFG.format_penalty) for t in totals.values())
            else:
                assert all(t > -CFG.format_penalty for t in totals.values())
