"""vLLM sleep mode in colocate mode: the engine is asleep while the PPO update runs, awake only to sample.

vLLM has no CPU wheel, so the engine is a fake (:class:`FakeLLM`) that records its calls and its
memory state; everything above it is real: TRL 1.16's ``VLLMGeneration`` (which issues sleep,
wake-up and weight loads), our :class:`~r2_write.rl.rollout.VLLMSampler` and the PPO loop of
:func:`r2_write.rl.trainer.train`.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import pytest
import torch

import r2_write.rl.trainer as trainer
from r2_write.rl.rollout import VLLMSampler
from tests.rl.stand_ins import PROMPTS, fake_reward_fn, small_cfg

torch.set_num_threads(1)


class FakeLLM:
    """vllm.LLM's surface that TRL's colocate mode uses; ``events`` is the call log, ``awake`` what holds memory."""

    events: list[str] = []
    instances: list["FakeLLM"] = []

    def __init__(self, **kwargs):
        self.kwargs, self.awake = kwargs, {"weights", "kv_cache"}
        model = SimpleNamespace(load_weights=self._load_weights)
        self.llm_engine = SimpleNamespace(model_executor=SimpleNamespace(
            driver_worker=SimpleNamespace(model_runner=SimpleNamespace(model=model))))
        self.loaded: dict[str, torch.Tensor] = {}
        FakeLLM.instances.append(self)
        FakeLLM.events.append("init")

    def _load_weights(self, weights):
        assert "weights" in self.awake, "weights loaded into a sleeping engine"
        for name, tensor in weights:
            self.loaded[name] = tensor.detach().clone()
        if FakeLLM.events[-1] != "load_weights":
            FakeLLM.events.append("load_weights")

    def sleep(self, level: int = 1):
        assert level == 2
        self.awake = set()
        FakeLLM.events.append("sleep")

    def wake_up(self, tags=None):
        self.awake |= set(tags or ("weights", "kv_cache"))
        FakeLLM.events.append(f"wake_up:{','.join(tags or [])}")

    def reset_prefix_cache(self):
        FakeLLM.events.append("reset_prefix_cache")

    def generate(self, prompts, sampling_params=None, use_tqdm=False):
        assert self.awake == {"weights", "kv_cache"}, f"generate with {self.awake} awake"
        FakeLLM.events.append("generate")
        n = sampling_params.kwargs["max_tokens"]
        return [SimpleNamespace(prompt_token_ids=p["prompt_token_ids"],
                                outputs=[SimpleNamespace(token_ids=[(7 * i + 3) % 50 + 10 for i in range(n)], logprobs=None)])
                for p in prompts]


class FakeSamplingParams:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


@pytest.fixture()
def fake_vllm(monkeypatch):
    """TRL's VLLMGeneration with FakeLLM as its engine (and the environment variables it sets restored)."""
    import trl.generation.vllm_generation as vg

    for name, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "localhost"),
                        ("MASTER_PORT", "29512")):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(vg, "is_vllm_available", lambda *a, **k: True)
    monkeypatch.setattr(vg, "LLM", FakeLLM, raising=False)
    monkeypatch.setattr(vg, "SamplingParams", FakeSamplingParams, raising=False)
    FakeLLM.events, FakeLLM.instances = [], []
    return vg.VLLMGeneration


def run_ppo(tiny_model_dir, tmp_path, monkeypatch, generation_cls, sleep: bool) -> list[str]:
    """Two PPO steps with vLLM sampling; the engine's state is logged at every update."""
    monkeypatch.setattr(trainer, "VLLMSampler", functools.partial(VLLMSampler, generation_cls=generation_cls))
    update = trainer.ppo_update

    def logged_update(*args, **kwargs):
        engine = FakeLLM.instances[0]
        FakeLLM.events.append(f"update (awake: {','.join(sorted(engine.awake)) or 'nothing'})")
        return update(*args, **kwargs)

    monkeypatch.setattr(trainer, "ppo_update", logged_update)
    cfg = small_cfg(total_steps=2, save_every=0, max_new_tokens=4, use_vllm=True, vllm_sleep_mode=sleep,
                    output_dir=str(tmp_path / "ppo"))
    out = trainer.train(tiny_model_dir, PROMPTS, fake_reward_fn, cfg)
    assert len(out["history"]) == 2
    return FakeLLM.events


def test_sleep_mode_releases_the_engine_during_every_update(tiny_model_dir, tmp_path, monkeypatch, fake_vllm):
    events = run_ppo(tiny_model_dir, tmp_path, monkeypatch, fake_vllm, sleep=True)
    engine = FakeLLM.instances[0]
    assert engine.kwargs["enable_sleep_mode"] is True and engine.kwargs["gpu_memory_utilization"] == 0.3
    rollout = ["wake_up:kv_cache", "generate", "sleep"]
    sync = ["wake_up:weights", "load_weights", "reset_prefix_cache"]
    assert events == [
        "init", "sleep",  # asleep from the start: the weights are pushed from the policy before sampling
        *sync, *rollout, "update (awake: nothing)", *sync,  # step 1: sampled, asleep for the update, synced
        *rollout, "update (awake: nothing)", *sync,  # step 2: the synced weights stay awake, only the cache wakes
    ]
    # what vLLM samples from is the updated policy's weights (the last sync)
    from transformers import AutoModelForCausalLM

    final = AutoModelForCausalLM.from_pretrained(tmp_path / "ppo" / "final").state_dict()
    assert torch.equal(engine.loaded["lm_head.weight"], final["lm_head.weight"])


def test_without_sleep_mode_the_engine_keeps_its_memory_through_the_update(tiny_model_dir, tmp_path, monkeypatch,
                                                                           fake_vllm):
    events = run_ppo(tiny_model_dir, tmp_path, monkeypatch, fake_vllm, sleep=False)
    assert "sleep" not in events and FakeLLM.instances[0].kwargs["enable_sleep_mode"] is False
    assert events.count("update (awake: kv_cache,weights)") == 2
