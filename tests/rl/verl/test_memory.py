"""The veRL memory arithmetic against hand-computed numbers (src/r2_write/rl/verl/memory.py)."""

import pytest

from r2_write.rl.verl.memory import GIB, MODELS, Settings, memory_table, verl_memory


def test_paper_settings_7b_on_8_gpus_hand_computed():
    m = verl_memory(MODELS["7B"], 8, Settings())
    # fp32 shard + fp32 gradient per model: 8 bytes x 7.62e9 / 8 GPUs
    assert m["actor_states"] == pytest.approx(7.62e9 * 8 / 8 / GIB) == pytest.approx(7.0966, abs=1e-4)
    assert m["optimizer"] == 0.0 and m["reference"] == 0.0 and m["vllm_update"] == 0.0
    # layer inputs 16384 x 3584 x 28 x 2 B + one layer recomputed 16384 x (10 x 3584 + 3 x 18944) x 2 B
    assert m["activations"] * GIB == 3_288_334_336 + 3_036_676_096
    # fused: one 2048-token chunk of bf16 logits + fp32 log-softmax + its gradient
    assert m["logprobs"] * GIB == 10 * 2048 * 152064
    # rollout: both models' fp32 weights + vLLM's 30% of 80 GiB; update: weights + gradients + activations + log-probs
    assert m["rollout_peak"] == pytest.approx(2 * 7.62e9 * 4 / 8 / GIB + 24.0)
    assert m["update_peak"] == pytest.approx(2 * m["actor_states"] + m["activations"] + m["logprobs"])
    assert m["peak"] == max(m["rollout_peak"], m["update_peak"]) and m["fits"] == 1.0


def test_each_setting_moves_the_term_it_should():
    model, base = MODELS["8B"], verl_memory(MODELS["8B"], 8, Settings())
    no_offload = verl_memory(model, 8, Settings(optimizer_offload=False))
    assert no_offload["optimizer"] * GIB == pytest.approx(2 * 8 * 8.03e9 / 8)  # AdamW m and v, fp32, actor and critic
    unfused = verl_memory(model, 8, Settings(use_fused_kernels=False))
    assert (unfused["logprobs"] - base["logprobs"]) * GIB == 10 * (16384 - 2048) * 128256
    awake = verl_memory(model, 8, Settings(free_cache_engine=False))
    assert awake["update_peak"] - base["update_peak"] == pytest.approx(24.0)
    sixteen = verl_memory(model, 16, Settings())
    assert sixteen["actor_states"] == pytest.approx(base["actor_states"] / 2)
    assert sixteen["activations"] == base["activations"]  # per GPU: the token budget, not the model, sets it


def test_a_budget_past_the_gpu_does_not_fit():
    m = verl_memory(MODELS["8B"], 8, Settings(token_budget=65536, use_fused_kernels=False))
    assert m["fits"] == 0.0 and m["update_peak"] > 80


def test_the_table_has_every_model_gpu_count_and_variant():
    rows = memory_table().splitlines()[2:]
    assert len(rows) == 2 * 2 * 3
    assert sum("| 7B" in r and "16 x 80 GB" in r for r in rows) == 3
