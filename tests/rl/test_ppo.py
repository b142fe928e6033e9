"""PPO phases against hand-computed values, then real updates and a short train() run.

Fast tests use the tiny random Llama of tests/conftest.py (``tiny_model_dir``, hidden 32, 2
layers) with the embedded model's tokenizer; one test runs a real update on the embedded
SmolLM2-135M (batch 2, 8 tokens).
"""

import copy
import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from r2_write.rewards.process import ProcessRewardConfig, process_reward_fn, token_rewards
from r2_write.rl.ppo import (
    PolicyWithValue,
    compute_gae,
    compute_rewards,
    decode_with_offsets,
    encode_prompts,
    latest_checkpoint,
    load_causal_lm,
    ppo_loss,
    ppo_update,
    response_logits_and_values,
    response_mask,
    rollout,
    train,
    train_minibatch,
)
from r2_write.rl.ppo_config import PPOConfig
from r2_write.rl.utils import logprobs_from_logits, masked_mean, masked_whiten
from r2_write.trajectory import Segment, Trajectory, render, segment_spans

MODEL_DIR = "data/06_models/base_model"
PROMPTS = ["Write a haiku about the sea.", "Hi", "Describe a storm in one line.", "Name a colour."]

torch.set_num_threads(1)


def small_cfg(**overrides) -> PPOConfig:
    values = dict(batch_size=2, mini_batch_size=2, max_new_tokens=8, learning_rate=1e-5, critic_learning_rate=1e-3)
    return PPOConfig(**{**values, **overrides})


# ----------------------------------------------------------------------------- config


def test_config_derived_sizes_and_validation():
    cfg = PPOConfig(batch_size=8, mini_batch_size=4, micro_batch_size=2, rollouts_per_prompt=2)
    assert (cfg.num_mini_batches, cfg.prompts_per_step, cfg.grad_accum_steps) == (2, 4, 2)
    with pytest.raises(ValueError, match="multiple of mini_batch_size"):
        PPOConfig(batch_size=10, mini_batch_size=4)
    with pytest.raises(ValueError, match="gamma"):
        PPOConfig(gamma=1.5)


# ----------------------------------------------------------------------------- GAE


def test_gae_hand_computed_gamma_1():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.6, 0.7]])
    adv, ret = compute_gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=0.95)
    # t=2: delta = 1 - 0.7 = 0.3                      A2 = 0.3
    # t=1: delta = 0 + 0.7 - 0.6 = 0.1                A1 = 0.1 + 0.95 * 0.3   = 0.385
    # t=0: delta = 0 + 0.6 - 0.5 = 0.1                A0 = 0.1 + 0.95 * 0.385 = 0.46575
    assert adv[0].tolist() == pytest.approx([0.46575, 0.385, 0.3])
    assert ret[0].tolist() == pytest.approx([0.96575, 0.985, 1.0])  # returns = advantages + values


def test_gae_hand_computed_with_padding():
    rewards = torch.tensor([[0.2, 1.0, 0.0]])
    values = torch.tensor([[0.4, 0.5, 9.0]])  # 9.0 sits on padding and must not leak
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    adv, ret = compute_gae(rewards, values, mask, gamma=0.9, lam=0.5)
    # t=1 (last real token, next is terminal): delta = 1.0 - 0.5 = 0.5                 A1 = 0.5
    # t=0: delta = 0.2 + 0.9 * 0.5 - 0.4 = 0.25;  A0 = 0.25 + 0.9 * 0.5 * 0.5 = 0.475
    assert adv[0].tolist() == pytest.approx([0.475, 0.5, 0.0])
    assert ret[0].tolist() == pytest.approx([0.875, 1.0, 0.0])


# ----------------------------------------------------------------------------- loss


def test_ppo_loss_with_unit_ratios_is_unclipped_minus_mean_advantage():
    torch.manual_seed(0)
    logp, adv, values = torch.randn(2, 5), torch.randn(2, 5), torch.randn(2, 5)
    mask = torch.tensor([[1.0] * 5, [1.0, 1.0, 1.0, 0.0, 0.0]])
    loss, stats = ppo_loss(logp, logp, adv, values, values, values, mask, PPOConfig())
    assert stats["losses/policy_loss"] == pytest.approx(-masked_mean(adv, mask).item(), abs=1e-6)
    assert stats["losses/value_loss"] == 0.0
    assert stats["losses/clipfrac"] == 0.0 and stats["losses/approx_kl"] == pytest.approx(0.0, abs=1e-7)
    assert loss.item() == pytest.approx(-masked_mean(adv, mask).item(), abs=1e-6)


def test_ppo_loss_clips_beyond_epsilon():
    cfg = PPOConfig(cliprange=0.2, vf_coef=0.1)
    ratios = torch.tensor([[1.5, 1.5, 0.5, 0.5]])
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    zeros, mask = torch.zeros(1, 4), torch.ones(1, 4)
    loss, stats = ppo_loss(ratios.log(), zeros, adv, zeros, zeros, zeros, mask, cfg)
    # per token max(-A*r, -A*clip(r, 0.8, 1.2)):
    #   A=+1 r=1.5: max(-1.5, -1.2) = -1.2 (clipped)   A=-1 r=1.5: max(1.5, 1.2) = 1.5
    #   A=+1 r=0.5: max(-0.5, -0.8) = -0.5             A=-1 r=0.5: max(0.5, 0.8) = 0.8 (clipped)
    assert stats["losses/policy_loss"] == pytest.approx((-1.2 + 1.5 - 0.5 + 0.8) / 4)  # 0.15
    assert stats["losses/clipfrac"] == 1.0
    assert loss.item() == pytest.approx(0.15)


def test_value_loss_is_clipped_around_old_values():
    cfg = PPOConfig(cliprange_value=0.2)
    one = torch.ones(1, 1)
    _, stats = ppo_loss(0 * one, 0 * one, 0 * one, 0.5 * one, 0 * one, one, one, cfg)
    # unclipped (0.5 - 1)^2 = 0.25; clipped value 0.2 -> (0.2 - 1)^2 = 0.64; 0.5 * max = 0.32
    assert stats["losses/value_loss"] == pytest.approx(0.32)


# ----------------------------------------------------------------------------- rollout pieces


def test_response_mask_stops_after_first_eos():
    responses = torch.tensor([[7, 2, 2, 2], [7, 8, 9, 10], [2, 5, 2, 6]])
    assert response_mask(responses, [2]).tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]


def test_rollout_logprobs_match_sampling_on_left_padded_batch(tiny_lm, tokenizer):
    queries, query_mask = encode_prompts(tokenizer, ["A much longer prompt than the other one, really.", "Hi"], 64)
    assert query_mask[1, 0] == 0  # the short prompt is left-padded
    torch.manual_seed(1)
    out = tiny_lm.generate(input_ids=queries, attention_mask=query_mask, do_sample=True, top_k=0,
                           max_new_tokens=6, pad_token_id=2, output_logits=True, return_dict_in_generate=True)
    responses = out.sequences[:, queries.shape[1]:]
    sampled = torch.stack(out.logits, 1).log_softmax(-1).gather(2, responses.unsqueeze(-1)).squeeze(-1)
    ids = torch.cat([queries, responses], 1)
    with torch.no_grad():
        logits, _ = response_logits_and_values(
            PolicyWithValue(tiny_lm), ids, torch.cat([query_mask, torch.ones_like(responses)], 1),
            queries.shape[1], 1.0,
        )
    assert torch.allclose(logprobs_from_logits(logits, responses), sampled, atol=1e-4)


def test_kl_is_zero_when_policy_equals_reference(tiny_lm, tokenizer):
    policy = PolicyWithValue(copy.deepcopy(tiny_lm))
    torch.manual_seed(0)
    ro = rollout(policy, copy.deepcopy(tiny_lm), tokenizer, PROMPTS[:2], small_cfg())
    scores = torch.rand_like(ro.logprobs) * ro.response_mask
    rewards, kl = compute_rewards(scores, ro.logprobs, ro.ref_logprobs, ro.response_mask, kl_coef=0.1)
    assert kl.abs().max().item() < 1e-6
    assert torch.allclose(rewards, scores, atol=1e-7)
    assert ro.responses.shape == ro.logprobs.shape == ro.values.shape == ro.response_mask.shape
    assert [len(o) for o in ro.token_offsets] == ro.response_mask.sum(1).int().tolist()


def test_reward_placement_through_decoded_offsets(tokenizer):
    """A rollout's decoded offsets put each step reward on the token closing </revision>."""
    text = render(
        Trajectory(
            [Segment("draft", "Blue sea."), Segment("reflection", "Too flat."),
             Segment("revision", "The sea, restless slate.")],
            answer="The sea, restless slate.",
        )
    )
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    decoded, offsets = decode_with_offsets(tokenizer, ids)
    assert decoded == text and offsets[-1] == (len(text), len(text))
    assert all(decoded[s:e] == tokenizer.decode([t]) for t, (s, e) in zip(ids[:-1], offsets[:-1]))

    judge = lambda prompts, texts, rubrics: [3.0 if t == "Blue sea." else 6.0 for t in texts]  # noqa: E731
    cfg = ProcessRewardConfig(step_cost=0.0)
    result = process_reward_fn(judge, cfg)(["p"], [decoded])[0]
    rewards = token_rewards(offsets, result, cfg, process_weight=1.0)
    ends = [e for kind, _, e in segment_spans(text) if kind in ("draft", "revision")]
    draft_token, step_token = (next(i for i, (s, e) in enumerate(offsets) if s < end <= e) for end in ends)
    assert rewards[draft_token] == pytest.approx(2 / 9) and rewards[step_token] == pytest.approx(3 / 9)
    assert rewards[-1] == pytest.approx(5 / 9) and sum(rewards) == pytest.approx(10 / 9)


def _tiny_rollout(tiny_lm, tokenizer, prompts, cfg):
    policy = PolicyWithValue(copy.deepcopy(tiny_lm))
    torch.manual_seed(0)
    ro = rollout(policy, tiny_lm, tokenizer, prompts, cfg)
    scores = torch.zeros_like(ro.logprobs)
    scores[:, 0] = torch.linspace(0, 1, len(prompts))
    rewards, _ = compute_rewards(scores, ro.logprobs, ro.ref_logprobs, ro.response_mask, cfg.kl_coef)
    return policy, ro, *compute_gae(rewards, ro.values, ro.response_mask, cfg.gamma, cfg.lam)


def test_micro_batches_accumulate_to_the_full_batch_gradient(tiny_lm, tokenizer):
    cfg = small_cfg(batch_size=4, mini_batch_size=4, max_new_tokens=6)
    policy, ro, adv, ret = _tiny_rollout(tiny_lm, tokenizer, PROMPTS, cfg)
    ro.response_mask[1, 3:] = 0.0  # uneven lengths: micro-batches trim their padding columns
    ro.response_mask[3, 1:] = 0.0
    results = []
    for micro in (4, 1):
        model = copy.deepcopy(policy)
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        stats = train_minibatch(model, optimizer, ro, torch.arange(4), adv, ret,
                                small_cfg(batch_size=4, mini_batch_size=4, micro_batch_size=micro))
        results.append((model, stats))
    (full, full_stats), (micro, micro_stats) = results
    for p_full, p_micro in zip(full.parameters(), micro.parameters()):
        assert torch.allclose(p_full, p_micro, atol=1e-5)
    assert micro_stats["losses/value_loss"] == pytest.approx(full_stats["losses/value_loss"], rel=1e-4)


def test_target_kl_stops_updates_early(tiny_lm, tokenizer):
    cfg = small_cfg(batch_size=4, mini_batch_size=1, ppo_epochs=2, learning_rate=1e-2, target_kl=1e-9)
    policy, ro, adv, ret = _tiny_rollout(tiny_lm, tokenizer, PROMPTS, cfg)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.learning_rate)
    stats = ppo_update(policy, optimizer, ro, adv, ret, cfg)
    # first mini-batch has ratio 1 (kl 0), the second sees the moved policy and stops
    assert stats["ppo/early_stopped"] == 1.0 and stats["ppo/updates"] == 2.0


# ----------------------------------------------------------------------------- real update


def _fixed_batch_loss(policy, ro, advantages, returns, cfg) -> float:
    with torch.no_grad():
        logits, values = response_logits_and_values(
            policy, ro.input_ids, ro.attention_mask, ro.context_length, cfg.temperature
        )
        loss, _ = ppo_loss(logprobs_from_logits(logits, ro.responses), ro.logprobs, advantages, values,
                           ro.values, returns, ro.response_mask, cfg)
    return loss.item()


@pytest.mark.slow
def test_real_ppo_update_changes_weights_and_lowers_loss(tokenizer):
    cfg = small_cfg(ppo_epochs=2)
    lm = load_causal_lm(MODEL_DIR)
    policy = PolicyWithValue(lm)
    torch.manual_seed(0)
    ro = rollout(policy, lm, tokenizer, PROMPTS[:2], cfg)  # reference = policy at sampling time
    scores = torch.zeros_like(ro.logprobs)
    last = ro.response_mask.sum(1).long() - 1
    scores[torch.arange(2), last] = torch.tensor([1.0, 0.0])  # first completion good, second bad
    rewards, _ = compute_rewards(scores, ro.logprobs, ro.ref_logprobs, ro.response_mask, cfg.kl_coef)
    advantages, returns = compute_gae(rewards, ro.values, ro.response_mask, cfg.gamma, cfg.lam)
    whitened = masked_whiten(advantages, ro.response_mask)

    weight = lm.model.layers[0].self_attn.q_proj.weight
    before_w, before_head = weight.detach().clone(), policy.value_head.weight.detach().clone()
    loss_before = _fixed_batch_loss(policy, ro, whitened, returns, cfg)
    optimizer = torch.optim.AdamW(
        [{"params": lm.parameters(), "lr": cfg.learning_rate},
         {"params": policy.value_head.parameters(), "lr": cfg.critic_learning_rate}]
    )
    stats = ppo_update(policy, optimizer, ro, advantages, returns, cfg)
    loss_after = _fixed_batch_loss(policy, ro, whitened, returns, cfg)

    assert not torch.equal(weight, before_w) and not torch.equal(policy.value_head.weight, before_head)
    assert loss_after < loss_before
    assert stats["ppo/updates"] == 2.0
    assert {"losses/policy_loss", "losses/value_loss", "losses/approx_kl", "losses/clipfrac",
            "losses/entropy"} <= set(stats)


# ----------------------------------------------------------------------------- train()


def fake_reward_fn(prompts, completions, rubrics=None, **kwargs):
    """Deterministic: outcome from the completion's length, no steps."""
    assert rubrics is None or len(rubrics) == len(completions)
    return [{"outcome": 1.0 + len(c) % 10, "format_violation": None, "rewards": [], "process": 0.0,
             "n_reflections": 0, "n_steps": 0, "n_improved": 0, "n_redundant": 0, "n_worsened": 0}
            for c in completions]


METRICS = {"reward/mean", "reward/outcome", "reward/process", "reward/format_violations", "reward/redundant_frac",
           "response/length_tokens", "response/reflections",
           "objective/kl", "losses/entropy", "losses/value_loss", "losses/clipfrac", "losses/policy_loss",
           "losses/approx_kl"}


def test_train_two_steps_writes_loadable_final_and_checkpoints(tiny_model_dir, tmp_path):
    cfg = small_cfg(total_steps=2, save_every=1, keep_checkpoints=0, cleanup_checkpoints=False, output_dir=str(tmp_path / "ppo"))
    logged = []
    out = train(tiny_model_dir, PROMPTS, fake_reward_fn, cfg, rubrics=["r"] * 4,
                log_fn=lambda metrics, step: logged.append((step, metrics)))

    assert [step for step, _ in logged] == [1, 2] and len(out["history"]) == 2
    assert METRICS <= set(out["history"][0])
    no_steps = {"reward/steps_improved_frac", "reward/redundant_frac", "reward/steps_worsened_frac"}  # NaN: 0 steps
    assert all(math.isfinite(v) for k, v in out["history"][0].items() if k not in no_steps)
    assert all(math.isnan(out["history"][0][k]) for k in no_steps)
    final = AutoModelForCausalLM.from_pretrained(out["final_dir"])
    assert final.config.hidden_size == 32
    assert latest_checkpoint(cfg.output_dir).name == "checkpoint-2"
    state = json.loads((tmp_path / "ppo" / "checkpoint-1" / "trainer_state.json").read_text())
    assert state["step"] == 1 and len(state["history"]) == 1


def test_train_keeps_only_the_newest_checkpoints(tiny_model_dir, tmp_path):
    cfg = small_cfg(total_steps=3, save_every=1, keep_checkpoints=2, cleanup_checkpoints=False, output_dir=str(tmp_path / "ppo"))
    train(tiny_model_dir, PROMPTS, fake_reward_fn, cfg)
    assert sorted(p.name for p in (tmp_path / "ppo").iterdir()) == ["checkpoint-2", "checkpoint-3", "final"]


def test_train_resumes_from_the_latest_checkpoint_at_the_next_step(tiny_model_dir, tmp_path):
    def cfg(steps, name):
        return small_cfg(total_steps=steps, save_every=1, ppo_epochs=2, learning_rate=1e-3, cleanup_checkpoints=False,
                         output_dir=str(tmp_path / name))

    full = train(tiny_model_dir, PROMPTS, fake_reward_fn, cfg(2, "full"))
    train(tiny_model_dir, PROMPTS, fake_reward_fn, cfg(1, "resumed"))
    logged = []
    resumed = train(tiny_model_dir, PROMPTS, fake_reward_fn, cfg(2, "resumed"), log_fn=lambda m, step: logged.append(step))

    assert logged == [2]  # step 1 came from checkpoint-1
    assert len(resumed["history"]) == 2
    assert resumed["history"][0]["losses/value_loss"] == full["history"][0]["losses/value_loss"]
    # step 2 depends on the step-1 weights (kl to the reference), value head and optimizer state
    assert abs(full["history"][1]["objective/kl"]) > 1e-4
    for key in ("reward/mean", "objective/kl", "losses/policy_loss", "losses/value_loss", "losses/approx_kl"):
        assert resumed["history"][1][key] == pytest.approx(full["history"][1][key], rel=1e-4, abs=1e-7)


# ----------------------------------------------------------------------------- vLLM rollouts


class FakeVLLMGeneration:
    """Stands in for TRL's VLLMGeneration: records its arguments, returns scripted token ids."""

    instances: list = []

    def __init__(self, **kwargs):
        self.kwargs, self.calls, self.synced = kwargs, [], 0
        FakeVLLMGeneration.instances.append(self)

    def generate(self, prompts, images, num_generations):
        self.calls.append(prompts)
        # vLLM stops after eos (id 2, kept in the ids) or at max_completion_length (4 here)
        completions = [[5, 6, 2] if i % 2 == 0 else [300, 301, 302, 303] for i in range(len(prompts))]
        return prompts, completions, None, None

    def sync_weights(self):
        self.synced += 1


def test_vllm_sampler_strips_left_padding_and_samples_plainly(tiny_lm, tokenizer):
    from accelerate import Accelerator

    from r2_write.rl.ppo import VLLMSampler

    cfg = small_cfg(use_vllm=True, temperature=0.7, top_p=0.9, max_new_tokens=12, max_prompt_length=64)
    sampler = VLLMSampler(tiny_lm, Accelerator(cpu=True), tokenizer, cfg, generation_cls=FakeVLLMGeneration)
    gen = FakeVLLMGeneration.instances[-1]
    assert gen.kwargs["mode"] == "colocate" and gen.kwargs["model"] is tiny_lm
    assert (gen.kwargs["temperature"], gen.kwargs["top_p"], gen.kwargs["top_k"], gen.kwargs["max_completion_length"],
            gen.kwargs["max_model_length"]) == (0.7, 0.9, 0, 12, 76)
    queries, mask = encode_prompts(tokenizer, ["A much longer prompt than the other one, really.", "Hi"], 64)
    assert sampler(queries, mask) == [[5, 6, 2], [300, 301, 302, 303]]
    long_ids, short_ids = gen.calls[0]
    assert long_ids == queries[0].tolist() and short_ids == queries[1][mask[1].bool()].tolist()
    sampler.sync_weights()
    assert gen.synced == 1


def test_rollout_scores_the_sampler_tokens_with_the_policy(tiny_lm, tokenizer):
    from accelerate import Accelerator

    from r2_write.rl.ppo import VLLMSampler

    cfg = small_cfg(use_vllm=True, max_new_tokens=4)
    sampler = VLLMSampler(tiny_lm, Accelerator(cpu=True), tokenizer, cfg, generation_cls=FakeVLLMGeneration)
    policy = PolicyWithValue(tiny_lm)
    ro = rollout(policy, tiny_lm, tokenizer, ["Write a haiku.", "Hi"], cfg, sampler=sampler)

    assert ro.responses.tolist() == [[5, 6, 2, 2], [300, 301, 302, 303]]  # padded with pad (= eos here)
    assert ro.response_mask.tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]  # up to and including the first eos
    assert ro.truncated.tolist() == [False, True]
    ids = torch.cat([ro.queries, ro.responses], 1)
    with torch.no_grad():
        logits, _ = response_logits_and_values(policy, ids, torch.cat([ro.query_mask, torch.ones_like(ro.responses)], 1),
                                               ro.queries.shape[1], cfg.temperature)
    expected = logprobs_from_logits(logits, ro.responses) * ro.response_mask
    assert torch.allclose(ro.logprobs, expected, atol=1e-5)
    assert ro.completions[1] == tokenizer.decode([300, 301, 302, 303], skip_special_tokens=True) != ""


def test_train_with_vllm_syncs_weights_after_every_update(tiny_model_dir, tmp_path, monkeypatch):
    from r2_write.rl import ppo

    monkeypatch.setattr(ppo, "VLLMSampler", lambda lm, accelerator, tokenizer, cfg: _FakeSampler())
    cfg = small_cfg(total_steps=2, save_every=0, use_vllm=True, output_dir=str(tmp_path / "ppo"))
    out = train(tiny_model_dir, PROMPTS, fake_reward_fn, cfg)
    assert _FakeSampler.log == ["sample", "sync", "sample", "sync"]
    assert len(out["history"]) == 2


class _FakeSampler:
    log: list = []

    def __init__(self):
        _FakeSampler.log = []

    def __call__(self, queries, query_mask):
        _FakeSampler.log.append("sample")
        return [[5, 6, 2]] * len(queries)

    def sync_weights(self):
        _FakeSampler.log.append("sync")


def test_use_vllm_without_vllm_is_a_clear_error(tiny_lm, tokenizer):
    from accelerate import Accelerator
    from trl.import_utils import is_vllm_available

    from r2_write.rl.ppo import VLLMSampler

    if is_vllm_available():
        pytest.skip("vLLM is installed here")
    with pytest.raises(ImportError, match="ppo.use_vllm needs vLLM"):
        VLLMSampler(tiny_lm, Accelerator(cpu=True), tokenizer, small_cfg(use_vllm=True))


def stepped_reward_fn(prompts, completions, rubrics=None, **kwargs):
    """Well-formed stand-in results with process rewards on two positions, so lambda matters."""
    return [{"outcome": 1.0 + len(c) % 10, "format_violation": None, "rewards": [(1, 0.4), (3, -0.2)],
             "process": 0.2, "n_reflections": 1, "n_steps": 1, "n_improved": 1, "n_redundant": 0, "n_worsened": 0}
            for c in completions]


def test_outcome_only_ablation_rewards_the_outcome_alone(tiny_model_dir, tmp_path):
    """lambda = 0: at every logged step reward/mean is the outcome, and the RLHF reward adds only the KL term."""
    with_process = train(tiny_model_dir, PROMPTS, stepped_reward_fn, small_cfg(total_steps=2, save_every=0, process_weight=0.5,
                                                                          output_dir=str(tmp_path / "ppo")))
    logged = []
    ablation = train(tiny_model_dir, PROMPTS, stepped_reward_fn, small_cfg(total_steps=2, save_every=0, process_weight=0.0,
                                                                      output_dir=str(tmp_path / "outcome")),
                     log_fn=lambda metrics, step: logged.append((step, metrics)))
    assert [step for step, _ in logged] == [1, 2] and [m for _, m in logged] == ablation["history"]
    for row in ablation["history"]:
        assert row["reward/mean"] == pytest.approx(row["reward/outcome"], abs=1e-6)
        assert row["objective/rlhf_reward"] == pytest.approx(row["reward/mean"] + row["objective/non_score_reward"], abs=1e-6)
        assert row["objective/rlhf_reward"] == pytest.approx(row["reward/outcome"] - small_cfg().kl_coef * row["objective/kl"], abs=1e-6)
    first = with_process["history"][0]  # same seed, same first rollout: lambda x process on top of the outcome
    assert first["reward/mean"] == pytest.approx(ablation["history"][0]["reward/mean"] + 0.5 * 0.2, abs=1e-5)
