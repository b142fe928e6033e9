"""benchmarks/ppo_step.py on the tiny model: the step's parts are timed where the project calls them,
the floors run on the step's own tokens, and the timing wrappers are gone afterwards. Behaviour
only: nothing here is timed against a target."""

from __future__ import annotations

import pytest
import torch

from tests.benchmarks._load import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("ppo_step")


def test_one_step_times_its_parts_and_the_floors_use_its_tokens(bench, tiny_model_dir):
    from transformers import AutoTokenizer

    import r2_write.rl.ppo as ppo_mod
    import r2_write.rl.rollout as rollout_mod

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    policy = bench.PolicyWithValue(bench.load_causal_lm(tiny_model_dir))
    ref = bench.load_causal_lm(tiny_model_dir).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-6)
    cfg = bench.PPOConfig(batch_size=2, mini_batch_size=2, max_new_tokens=4, max_prompt_length=32)
    reward_cfg = bench.ProcessRewardConfig()
    prompts = bench.load_prompts("missing.jsonl", 2, tokenizer, 32)
    originals = (rollout_mod.reference_logprobs, ppo_mod.response_scores, optimizer.step)

    run = bench.one_step(policy, ref, tokenizer, optimizer, prompts, cfg,
                         bench.process_reward_fn(bench.fake_judge, reward_cfg), reward_cfg, torch.device("cpu"))

    for part in ("generate", "policy scoring", "reference", "decode", "update forward", "optimizer step"):
        assert run[f"part {part}"] > 0, part
    assert run["part generate"] <= run["rollout_s"] and run["part optimizer step"] <= run["update_s"]
    assert run["malformed"] == 2 and run["reward_wf_judged"] == 2  # the well-formed rewrites are judged
    ro = run["rollout"]
    assert bench.rollout_floor(policy.lm, ro, tokenizer, torch.device("cpu")) > 0
    assert bench.update_floor(policy.lm, ref, ro, torch.device("cpu")) > 0
    assert all(p.grad is None for p in policy.lm.parameters())  # the floor leaves no gradient behind
    assert "generate" not in vars(policy.lm)  # the wrappers are gone
    assert (rollout_mod.reference_logprobs, ppo_mod.response_scores, optimizer.step) == originals


def test_prompts_are_cut_to_fit_the_prompt_length(bench, tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"query": "' + "a long request about the sea " * 50 + '"}\n', encoding="utf-8")
    (prompt,) = bench.load_prompts(str(path), 1, tokenizer, 64)
    ids, _ = bench.encode_prompts(tokenizer, [prompt], 10_000)
    assert 32 < ids.shape[1] <= 64
