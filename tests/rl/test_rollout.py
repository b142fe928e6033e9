"""Rollouts (rl/rollout.py): masks, logprobs that match sampling, offsets for reward placement, vLLM sampling.

Runs on the tiny random Llama of tests/conftest.py (``tiny_model_dir``) with the embedded
model's tokenizer.
"""

import copy

import pytest
import torch

from r2_write.rewards.process import ProcessRewardConfig, process_reward_fn, token_rewards
from r2_write.rl.model import PolicyWithValue, response_logits_and_values
from r2_write.rl.ppo import compute_rewards
from r2_write.rl.rollout import decode_with_offsets, encode_prompts, response_mask, rollout
from r2_write.rl.utils import logprobs_from_logits
from r2_write.trajectory import Segment, Trajectory, render, segment_spans
from tests.rl.stand_ins import PROMPTS, small_cfg

torch.set_num_threads(1)


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

    from r2_write.rl.rollout import VLLMSampler

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

    from r2_write.rl.rollout import VLLMSampler

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


def test_use_vllm_without_vllm_is_a_clear_error(tiny_lm, tokenizer):
    from accelerate import Accelerator
    from trl.import_utils import is_vllm_available

    from r2_write.rl.rollout import VLLMSampler

    if is_vllm_available():
        pytest.skip("vLLM is installed here")
    with pytest.raises(ImportError, match="ppo.use_vllm needs vLLM"):
        VLLMSampler(tiny_lm, Accelerator(cpu=True), tokenizer, small_cfg(use_vllm=True))

