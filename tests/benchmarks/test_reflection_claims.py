"""benchmarks/reflection_claims.py: its statistics, verdicts and table (fast), the controlled task's tokenizer,
trajectories and measurements (fast), and a few seeds of the benchmark asserting the predictions that the full
20-seed run resolved (slow)."""

from __future__ import annotations

import math
import random

import pytest

from r2_write.rewards.process import ProcessRewardConfig, process_reward_fn
from r2_write.benchmark_tasks.keywords import KeywordSpec, keyword_judge
from r2_write.trajectory import format_error
from tests.benchmarks._load import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("reflection_claims")


@pytest.fixture(scope="module")
def ct(bench):
    import claims_task  # put on sys.path by the benchmark

    return claims_task


SPEC = KeywordSpec("en", ("sun", "tree", "water"), 25, "the sea")


# ----------------------------------------------------------------------------- statistics and verdicts


def test_mean_interval_is_a_t_interval(bench):
    mean, low, high, n = bench.mean_interval([1.0, 2.0, 3.0, float("nan")])
    # sd 1, n 3, t(0.975, 2) = 4.3027
    assert (mean, n) == (2.0, 3) and low == pytest.approx(2 - 4.3027 / math.sqrt(3), abs=1e-3)
    assert high == pytest.approx(2 + 4.3027 / math.sqrt(3), abs=1e-3)
    one = bench.mean_interval([5.0])
    assert one[0] == 5.0 and math.isnan(one[1]) and one[3] == 1
    assert bench.mean_interval([])[3] == 0


@pytest.mark.parametrize("relation, low, high, margin, expected", [
    ("<", -0.3, -0.1, 0.0, "holds"), ("<", -0.1, 0.2, 0.0, "not resolved"), ("<", 0.1, 0.3, 0.0, "does not hold"),
    (">=", -0.04, 0.2, 0.05, "holds"), (">=", -0.3, -0.01, 0.05, "does not hold"),
    (">=", -0.2, 0.1, 0.05, "not resolved"), ("<", float("nan"), float("nan"), 0.0, "not resolved"),
])
def test_verdicts(bench, relation, low, high, margin, expected):
    assert bench.verdict(relation, low, high, margin) == expected


def _seed(seed: int, ppo: dict, outcome: dict) -> dict:
    base = {"outcome": 8.0, "malformed": 0.0, "tokens": 80.0, "reflections": 0.5, "redundant_share": 0.5,
            "redundant_per_response": 0.25, "useful_rate": 0.5}
    return {"seed": seed, "evals": {"sft": {"0": base}, "ppo": {"0": base, "10": {**base, **ppo}},
                                    "ppo_outcome": {"0": base, "10": {**base, **outcome}},
                                    "grpo": {"0": base, "10": base}}}


def test_summary_pairs_the_seeds_and_gives_verdicts(bench):
    seeds = [_seed(0, {"redundant_per_response": 0.05, "tokens": 60.0}, {"redundant_per_response": 0.30}),
             _seed(1, {"redundant_per_response": 0.10, "tokens": 62.0}, {"redundant_per_response": 0.35}),
             _seed(2, {"redundant_per_response": 0.08, "tokens": 61.0}, {"redundant_per_response": 0.31})]
    summary = bench.summarize(seeds)
    assert summary["steps"] == [0, 10] and summary["seeds"] == [0, 1, 2]
    p1 = summary["predictions"]["P1"]
    assert p1["diffs"] == pytest.approx([-0.25, -0.25, -0.23]) and p1["verdict"] == "holds"
    assert summary["predictions"]["P3"]["mean"] == pytest.approx(-19.0)
    # identical outcome and useful rate: a zero-width interval at 0 is non-inferior
    assert summary["predictions"]["P4"]["verdict"] == "holds"
    cell = summary["cells"]["ppo_outcome"][10]["redundant_per_response"]
    assert cell[0] == pytest.approx(0.32) and cell[3] == 3
    flipped = bench.summarize([_seed(s["seed"], {"redundant_per_response": 0.4}, {"redundant_per_response": 0.1})
                               for s in seeds])
    assert flipped["predictions"]["P1"]["verdict"] == "does not hold"


def test_table_rows_and_prediction_lines(bench):
    seeds = [_seed(s, {"tokens": 60.0 + s}, {"tokens": 70.0}) for s in range(3)]
    table = bench.markdown_table(bench.summarize(seeds)).splitlines()
    assert table[2].startswith("| sft (start) | 0 | 8.00 [8.00, 8.00] |")
    assert [line.split("|")[1].strip() for line in table[3:6]] == ["ppo", "ppo_outcome", "grpo"]
    p3 = next(line for line in table if line.startswith("| P3 "))
    assert "| -9.0 [-11.5, -6.5] | 3 | holds |" in p3


def test_settings_fail_on_a_bad_field(bench):
    with pytest.raises(SystemExit):
        bench.parse_args(["--batch", "30", "--grpo-generations", "4"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--process-sign", "2"])
    settings, _ = bench.parse_args(["--seeds", "2", "--steps", "20", "--eval-every", "10"])
    assert settings.eval_steps == [0, 10, 20] and settings.key("seeds") == bench.Settings(steps=20).key("seeds")


def test_incentives_come_from_the_project_reward(bench):
    inc = bench.incentives(bench.Settings(process_weight=1.0))
    # outcome only: a missing word is 1.8 of 9 points; a redundant step changes nothing
    assert inc["ppo_outcome"] == {"useful": pytest.approx(0.2), "redundant": pytest.approx(0.0)}
    assert inc["ppo"]["redundant"] < 0 < inc["ppo_outcome"]["useful"] < inc["ppo"]["useful"]
    table = bench.incentives_table(bench.Settings()).splitlines()
    assert len(table) == 4 and table[3].startswith("| ppo_outcome | +0.2000 | +0.0000 |")


# ----------------------------------------------------------------------------- the controlled task


def test_tokenizer_round_trips_and_tags_are_one_token(ct):
    tok = ct.build_tokenizer()
    text = ct.sft_example(SPEC, draft_complete=False, reflect=True, rng=random.Random(0))["completion"]
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == text and tok.unk_token_id not in ids
    for tag in ct.TAGS:
        assert len(tok(tag, add_special_tokens=False)["input_ids"]) == 1
    prompt = tok.apply_chat_template([{"role": "user", "content": ct.task_prompt(SPEC)}], tokenize=False,
                                     add_generation_prompt=True)
    assert prompt.startswith("<user> Write a short note") and prompt.endswith("<assistant> ")


@pytest.mark.parametrize("complete, reflect, case, steps, redundant, useful, outcome", [
    (False, True, "incomplete+useful", 1, 0, True, 10.0),
    (False, False, "incomplete+stop", 0, 0, False, 8.2),
    (True, True, "complete+redundant", 1, 1, None, 10.0),
    (True, False, "complete+stop", 0, 0, None, 10.0),
])
def test_warm_start_cases_are_well_formed_and_measured(ct, complete, reflect, case, steps, redundant, useful, outcome):
    ex = ct.sft_example(SPEC, complete, reflect, random.Random(1))
    assert ex["case"] == case and format_error(ex["completion"]) is None
    m = ct.measure_completion(ex["completion"], SPEC)
    assert (m["steps"], m["redundant"], m["useful"], m["outcome"], m["draft_incomplete"]) == (
        steps, redundant, useful, outcome, not complete)
    # the project's reward agrees on what is redundant and what improves
    res = process_reward_fn(keyword_judge, ProcessRewardConfig())([ex["prompt"]], [ex["completion"]],
                                                                  rubrics=[ex["criteria"]])[0]
    assert res["format_violation"] is None and res["n_steps"] == steps and res["n_redundant"] == redundant


def test_measure_counts_malformed_and_truncated(ct):
    good = ct.sft_example(SPEC, True, False, random.Random(2))["completion"]
    assert ct.measure_completion(good, SPEC, truncated=True)["malformed"]
    broken = ct.measure_completion(good.replace("</draft>", ""), SPEC)
    assert broken["malformed"] and broken["outcome"] == 1.0 and broken["draft_incomplete"] is None
    agg = ct.aggregate([ct.measure_completion(ct.sft_example(SPEC, c, r, random.Random(3))["completion"], SPEC)
                        for c, r in ((False, True), (False, False), (True, True), (True, False))], [90, 40, 90, 50])
    assert agg["useful_rate"] == 0.5 and agg["redundant_per_response"] == 0.25 and agg["redundant_share"] == 0.5
    assert agg["reflect_after_incomplete"] == 0.5 and agg["reflect_after_complete"] == 0.5
    assert agg["tokens"] == 67.5 and agg["malformed"] == 0.0 and agg["outcome"] == pytest.approx((10 + 8.2 + 20) / 4)


def test_warm_start_mix(ct):
    examples = ct.sft_examples(ct.make_specs(400, 0), seed=0)
    shares = {c: sum(e["case"] == c for e in examples) / 400 for c in
              ("incomplete+useful", "incomplete+stop", "complete+redundant", "complete+stop")}
    assert all(0.18 < s < 0.32 for s in shares.values()), shares


# ----------------------------------------------------------------------------- a few seeds of the benchmark (slow)

# The predictions whose 95% interval excluded zero in the full run (docs/results-claims.md), each with the
# per-seed paired difference ppo - ppo_outcome at the last step there: mean and standard deviation over seeds.
# The test runs the SLOW_SEEDS (seeds the full run did not use) and asserts that the mean of their differences
# lies on the measured side of mean + SPREAD x sd / sqrt(len(SLOW_SEEDS)) (a margin of SPREAD standard errors of
# a few-seed mean, from the full run's spread); that bound must itself lie on the same side of 0, or the
# prediction is left out.
# Full run of 2026-12-04 (20 seeds, docs/results-claims.md): two intervals excluded zero.
#   P3 response tokens: ppo - ppo_outcome = +3.21 [1.54, 4.89], sd 3.587 over seeds: the process reward made
#      responses LONGER (the prediction does not hold); asserted here in that measured direction, so a change
#      that removes or reverses the process term's effect fails. With 6 seeds and SPREAD 2 the bound is
#      3.21 - 2 x 3.587 / sqrt(6) = +0.28 tokens.
#   P2 useful-reflection rate: +0.052 [0.003, 0.101], sd 0.105: left out, a bound of 2 standard errors stays
#      above 0 only from (2 x 0.105 / 0.052)^2 = 17 seeds on, far beyond a slow test's budget.
FULL_RUN = {"P3": ("tokens", ">", 3.2137, 3.5870)}  # name -> (metric, side of ppo - ppo_outcome, mean, sd)
SLOW_SEEDS, SPREAD = (100, 101, 102, 103, 104, 105), 2.0


def slow_results(bench, work, cache_dir, **overrides) -> list[dict]:
    """The SLOW_SEEDS of ppo and ppo_outcome with the benchmark's settings (plus ``overrides``)."""
    import torch

    settings = bench.Settings(seeds=len(SLOW_SEEDS), **overrides)
    data = bench.split(settings)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the benchmark runs (a tiny model: more threads only wait on each other)
    try:
        sft_dir = bench.warm_start(settings, data["sft"], cache_dir)  # trained once per SFT settings, then reused
        return [bench.run_seed(settings, seed, sft_dir, data, work, variants=("ppo", "ppo_outcome"))
                for seed in SLOW_SEEDS]
    finally:
        torch.set_num_threads(threads)


def failed_predictions(results: list[dict], full_run: dict) -> list[str]:
    """The resolved predictions that ``results`` (a few seeds) break, with the margin from the full run's spread."""
    last = str(max(int(step) for step in results[0]["evals"]["ppo"]))
    failures = []
    for name, (metric, relation, mean, sd) in full_run.items():
        diffs = [r["evals"]["ppo"][last][metric] - r["evals"]["ppo_outcome"][last][metric] for r in results]
        got = sum(diffs) / len(diffs)
        bound = mean + (1 if relation == "<" else -1) * SPREAD * sd / math.sqrt(len(diffs))
        if not (got < bound if relation == "<" else got > bound):
            failures.append(f"{name} {metric}: ppo - ppo_outcome = {got:.3f} over {len(diffs)} seeds "
                            f"(diffs {[round(d, 3) for d in diffs]}), predicted {relation} {bound:.3f}")
    return failures


@pytest.mark.slow
def test_resolved_predictions_hold_on_a_few_seeds(bench, tmp_path, pytestconfig):
    assert FULL_RUN, "no prediction was resolved by the full run"
    for name, (metric, relation, mean, sd) in FULL_RUN.items():  # each bound is on the predicted side of 0
        bound = mean + (1 if relation == "<" else -1) * SPREAD * sd / math.sqrt(len(SLOW_SEEDS))
        assert (bound < 0) if relation == "<" else (bound > 0), name
    cache = pytestconfig.cache.mkdir("reflection_claims_sft")
    failures = failed_predictions(slow_results(bench, tmp_path, cache), FULL_RUN)
    assert not failures, "\n".join(failures)
