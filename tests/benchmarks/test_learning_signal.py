"""benchmarks/learning_signal.py without training: its options, its scoring of completions through the
project's process reward (malformed = outcome 1), and its table. The training run itself takes tens
of minutes on 2 cores; tests/rl/test_learning.py is the suite's learning test."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from r2_write.rewards.process import ProcessRewardConfig, process_reward_fn
from r2_write.benchmark_tasks.keywords import keyword_judge, make_prompts, make_sft_examples
from tests.benchmarks._load import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("learning_signal")


def test_options_defaults_tiny_and_overrides(bench):
    args = bench.parse_args([])
    assert (args.reflect_share, args.critic, args.steps, args.languages) == (0.5, "shared", 6, ["en"])
    tiny = bench.parse_args(["--tiny", "--steps", "2", "--critic", "separate"])
    assert (tiny.train_prompts, tiny.steps, tiny.critic) == (16, 2, "separate")
    with pytest.raises(SystemExit):
        bench.parse_args(["--batch", "6", "--grpo-generations", "4"])


def test_scores_reflected_skipped_and_malformed_completions(bench, tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = make_prompts(40, seed=0, languages=["en"])
    examples = make_sft_examples(rows, seed=0, reflect_share=0.5)
    reward = process_reward_fn(keyword_judge, ProcessRewardConfig())
    reflected = [e for e in examples if e["reflected"]][:3]
    skipped = [e for e in examples if not e["reflected"]][:3]
    batch = reflected + skipped
    texts = [e["completion"] for e in batch] + ["no think tags at all"]
    prompts = [e["prompt"] for e in batch] + [batch[0]["prompt"]]
    rubrics = [e["criteria"] for e in batch] + [batch[0]["criteria"]]
    stats = bench.score_completions(reward, tok, prompts, texts, rubrics, [False] * len(texts))
    skipped_scores = keyword_judge([e["prompt"] for e in skipped], [e["answer"] for e in skipped],
                                   [e["criteria"] for e in skipped])
    assert stats["n"] == 7 and stats["format_violations"] == pytest.approx(1 / 7)
    assert stats["outcome"] == pytest.approx((3 * 10 + sum(skipped_scores) + 1) / 7)  # malformed counts as 1
    assert stats["outcome_wellformed"] == pytest.approx((3 * 10 + sum(skipped_scores)) / 6)
    redundant = sum(e["redundant"] for e in reflected)
    assert stats["reflections"] == pytest.approx(sum(1 + e["redundant"] for e in reflected) / 7)
    assert stats["redundant_frac"] == pytest.approx(redundant / (3 + redundant))


def test_table_has_the_start_and_one_row_per_evaluation(bench):
    ev = {"outcome": 7.5, "outcome_wellformed": 8.0, "format_violations": 0.25, "n": 4, "length_tokens": 150.0,
          "reflections": 0.5, "redundant_frac": 0.0}
    step = {"reward": 0.4, "outcome": 6.0, "format_violations": 0.5}
    results = {"sft_eval": ev, "variants": {"ppo": {"per_step": [{"step": 1, **step}, {"step": 2, **step}],
                                                     "evals": [{"step": 2, **ev}]}}}
    table = bench.markdown_table(results).splitlines()
    assert len(table) == 4 and table[2].startswith("| sft (start) | 0 | 7.50 |")
    assert table[3].startswith("| ppo | 2 | 7.50 | 8.00 | 1/4 | 150 | 0.50 | 0.00 | 0.400 | 6.00 | 0.50 |")


# The documented learning_signal commands (docs/results.md) are parsed by tests/test_docs_commands.py.
