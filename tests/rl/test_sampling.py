"""Rollout sampling uses PPOConfig's settings only, never the checkpoint's generation_config.json."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer
from transformers.generation.logits_process import TopKLogitsWarper

from r2_write.rl import trainer
from r2_write.rl.model import PolicyWithValue, load_causal_lm
from r2_write.rl.ppo_config import PPOConfig
from r2_write.rl.rollout import VLLMSampler, rollout
from r2_write.rl.trainer import train
from tests.rl.stand_ins import PROMPTS, fake_reward_fn

torch.set_num_threads(1)

# what a chat checkpoint may ship; inherited, each would change the sampled distribution or length
SHIPPED = {"do_sample": False, "temperature": 0.5, "top_k": 50, "top_p": 0.8, "min_p": 0.2, "repetition_penalty": 1.3,
           "max_length": 20, "no_repeat_ngram_size": 2, "suppress_tokens": [5, 6], "bad_words_ids": [[7]]}


@pytest.fixture(scope="module")
def shipped_dir(tiny_model_dir, tmp_path_factory) -> str:
    """The tiny model with a generation_config.json full of sampling settings."""
    path = tmp_path_factory.mktemp("shipped") / "model"
    shutil.copytree(tiny_model_dir, path)
    config = json.loads((path / "generation_config.json").read_text())
    (path / "generation_config.json").write_text(json.dumps({**config, **SHIPPED}))
    return str(path)


def _spied_rollout(model_dir: str, cfg: PPOConfig, monkeypatch):
    """Run a rollout and capture generate's merged config and its logits processors."""
    lm = load_causal_lm(model_dir)
    seen = {}
    prepare, processors = type(lm)._prepare_generation_config, type(lm)._get_logits_processor

    def spy_prepare(self, *args, **kwargs):
        seen["config"], model_kwargs = prepare(self, *args, **kwargs)
        return seen["config"], model_kwargs

    def spy_processors(self, *args, **kwargs):
        seen["processors"] = processors(self, *args, **kwargs)
        return seen["processors"]

    monkeypatch.setattr(type(lm), "_prepare_generation_config", spy_prepare)
    monkeypatch.setattr(type(lm), "_get_logits_processor", spy_processors)
    torch.manual_seed(0)
    ro = rollout(PolicyWithValue(lm), lm, AutoTokenizer.from_pretrained(model_dir), PROMPTS[:2], cfg)
    return lm, ro, seen


def test_rollout_inherits_nothing_from_the_checkpoint_generation_config(shipped_dir, monkeypatch):
    cfg = PPOConfig(batch_size=2, mini_batch_size=2, max_new_tokens=24)
    lm, ro, seen = _spied_rollout(shipped_dir, cfg, monkeypatch)
    assert lm.generation_config.repetition_penalty == 1.3  # the checkpoint does ship them

    merged = seen["config"]
    assert (merged.do_sample, merged.temperature, merged.top_k, merged.top_p, merged.min_p,
            merged.repetition_penalty, merged.no_repeat_ngram_size) == (True, 1.0, 0, 1.0, None, 1.0, 0)
    assert merged.suppress_tokens is None and merged.bad_words_ids is None and merged.max_new_tokens == 24
    # no logits processor at all: the tokens are sampled from softmax(logits), the distribution
    # the rollout's logprobs score (a repetition penalty or top-k would not be)
    assert list(seen["processors"]) == []
    assert ro.responses.shape[1] > 20 - ro.context_length  # the shipped max_length=20 did not cut the rollout
    assert lm.generation_config.repetition_penalty == 1.3 and lm.generation_config.top_k == 50  # put back


def test_configured_sampling_settings_reach_generate(shipped_dir, monkeypatch):
    cfg = PPOConfig(batch_size=2, mini_batch_size=2, max_new_tokens=4, top_k=7, repetition_penalty=1.1)
    _, _, seen = _spied_rollout(shipped_dir, cfg, monkeypatch)
    assert (seen["config"].top_k, seen["config"].repetition_penalty) == (7, 1.1)
    names = [type(p).__name__ for p in seen["processors"]]
    assert names == ["RepetitionPenaltyLogitsProcessor", "TopKLogitsWarper"]
    assert next(p for p in seen["processors"] if isinstance(p, TopKLogitsWarper)).top_k == 7


def test_sampling_restrictions_are_warned_about(tiny_model_dir, tmp_path, caplog):
    assert PPOConfig().sampling_restrictions() == []
    assert PPOConfig(top_k=20, top_p=0.9, min_p=0.05, repetition_penalty=1.2).sampling_restrictions() == [
        "top_k=20", "top_p=0.9", "min_p=0.05", "repetition_penalty=1.2"]
    assert PPOConfig(min_p=0.0).sampling_restrictions() == []  # 0 = off
    cfg = PPOConfig(batch_size=2, mini_batch_size=2, max_new_tokens=2, total_steps=1, save_every=0, top_k=20,
                    output_dir=str(tmp_path / "ppo"))
    with caplog.at_level(logging.WARNING, logger=trainer.__name__):
        train(tiny_model_dir, PROMPTS[:2], fake_reward_fn, cfg)
    assert any("sample with top_k=20" in r.getMessage() and "off-policy" in r.getMessage() for r in caplog.records)


def test_sampling_config_validation():
    for bad in ({"top_k": -1}, {"min_p": 1.5}, {"repetition_penalty": 0.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            PPOConfig(**bad)


class _RecordingGeneration:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


def test_vllm_sampler_gets_the_same_sampling_settings(tiny_model_dir):
    from accelerate import Accelerator

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    plain = VLLMSampler(None, Accelerator(cpu=True), tok, PPOConfig(use_vllm=True), _RecordingGeneration)
    assert {k: plain.generation.kwargs[k] for k in ("temperature", "top_k", "top_p", "min_p", "repetition_penalty")} == {
        "temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0, "repetition_penalty": 1.0}
    cfg = PPOConfig(use_vllm=True, temperature=0.9, top_k=20, top_p=0.95, min_p=0.05, repetition_penalty=1.1)
    kwargs = VLLMSampler(None, Accelerator(cpu=True), tok, cfg, _RecordingGeneration).generation.kwargs
    assert (kwargs["temperature"], kwargs["top_k"], kwargs["top_p"], kwargs["min_p"], kwargs["repetition_penalty"]) == (
        0.9, 20, 0.95, 0.05, 1.1)
