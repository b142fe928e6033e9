"""SFT, PPO and GRPO pipelines run by SequentialRunner on a tiny random Llama (real trainers, seconds)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from kedro.runner import SequentialRunner
from transformers import AutoModelForCausalLM

from r2_write.pipelines.grpo import create_pipeline as grpo_pipeline
from r2_write.pipelines.ppo import create_pipeline as ppo_pipeline
from r2_write.pipelines.ppo_outcome import create_pipeline as ppo_outcome_pipeline
from r2_write.pipelines.sft import create_pipeline as sft_pipeline
from r2_write.rubrics.schema import generic_rubric
from tests.pipelines.conftest import memory_catalog


def _params_equal(a: str, b: str) -> bool:
    ma, mb = AutoModelForCausalLM.from_pretrained(a), AutoModelForCausalLM.from_pretrained(b)
    return all(torch.equal(x, y) for x, y in zip(ma.state_dict().values(), mb.state_dict().values()))


def test_sft_pipeline_trains_and_saves_a_loadable_checkpoint(tiny_model_dir, tmp_path):
    sft_set = pd.DataFrame({"prompt": ["Write a haiku.", "Write a memo."],
                            "completion": ["<think>\n<plan>\np\n</plan>\n</think>\nA haiku.", "<think>\n</think>\nA memo."]})
    catalog = memory_catalog({"scoring.sft_set": sft_set, "base_model": tiny_model_dir,
                              "params:sft": {"max_steps": 2, "per_device_train_batch_size": 2, "max_length": 128, "learning_rate": 1e-3,
                                             "save_steps": 1, "output_dir": str(tmp_path / "sft")}})
    SequentialRunner().run(sft_pipeline(), catalog)
    model_dir = catalog.load("sft.model")
    assert not _params_equal(model_dir, tiny_model_dir)  # the weights moved
    losses = catalog.load("sft_metrics")["sft/loss"]
    assert [m["step"] for m in losses] == [0, 1] and all(m["value"] > 0 for m in losses)
    assert not list((tmp_path / "sft" / "trainer").glob("checkpoint-*"))  # deleted once training finished


def test_sft_with_lora_merges_into_a_plain_checkpoint(tiny_model_dir, tmp_path):
    sft_set = pd.DataFrame({"prompt": ["Q"] * 2, "completion": ["<think>\n</think>\nA"] * 2})
    catalog = memory_catalog({"scoring.sft_set": sft_set, "base_model": tiny_model_dir,
                              "params:sft": {"max_steps": 1, "max_length": 64, "learning_rate": 1e-2, "lora": {"enabled": True, "r": 4, "alpha": 8},
                                             "output_dir": str(tmp_path)}})
    SequentialRunner().run(sft_pipeline(), catalog)
    cfg = json.loads(open(f"{catalog.load('sft.model')}/config.json").read())
    assert cfg["model_type"] == "llama"  # merged: loads without peft


def _rl_catalog(tiny_model_dir, project_params, llm_params, variant, extra):
    crit = json.dumps([c.to_row() for c in generic_rubric(project_params["generic_rubric"])])
    rl_set = pd.DataFrame({"id": ["r1", "r2"], "prompt": ["Plan a lesson on tides.", "Write an ad."], "criteria": [crit] * 2})
    return memory_catalog({
        "scoring.rl_set": rl_set, "sft.model": tiny_model_dir,
        f"params:{variant}": extra, "params:llm": llm_params,
        "params:judge": {**project_params["judge"], "mode": "generate"},
        "params:generic_rubric": project_params["generic_rubric"],
    }, keep=(f"{variant}.history",))


PPO_TINY = {"batch_size": 2, "mini_batch_size": 2, "max_new_tokens": 8, "total_steps": 2, "save_every": 1, "learning_rate": 1e-3}


@pytest.mark.parametrize("variant,pipe,weight", [("ppo", ppo_pipeline, 0.5), ("ppo_outcome", ppo_outcome_pipeline, 0.0)])
def test_ppo_pipelines_share_metric_names(tmp_path, tiny_model_dir, project_params, llm_params, fake_llm, variant, pipe, weight):
    params = {**PPO_TINY, "process_weight": weight, "output_dir": str(tmp_path / variant)}
    catalog = _rl_catalog(tiny_model_dir, project_params, llm_params, variant, params)
    SequentialRunner().run(pipe(), catalog)
    assert not _params_equal(catalog.load(f"{variant}.model"), tiny_model_dir)
    history = catalog.load(f"{variant}.history")
    assert len(history) == 2 and set(history["variant"]) == {variant}
    metrics = catalog.load(f"{variant}_metrics")
    for name in ("reward/mean", "reward/outcome", "reward/process", "response/length_tokens", "response/reflections",
                 "objective/kl", "losses/entropy", "losses/value_loss", "losses/clipfrac"):
        assert len(metrics[f"{variant}/{name}"]) == 2, name
    assert sorted(p.name for p in (tmp_path / variant).iterdir()) == ["final"]  # checkpoints deleted when done
    assert catalog.load(f"{variant}_curves").axes[0].get_title() == "Reward"


def test_grpo_pipeline(tiny_model_dir, project_params, llm_params, fake_llm, tmp_path):
    params = {"max_steps": 1, "per_device_train_batch_size": 2, "num_generations": 2, "max_completion_length": 8, "learning_rate": 1e-3,
              "save_steps": 1, "output_dir": str(tmp_path)}
    catalog = _rl_catalog(tiny_model_dir, project_params, llm_params, "grpo", params)
    SequentialRunner().run(grpo_pipeline(), catalog)
    assert (catalog.load("grpo.model"))
    metrics = catalog.load("grpo_metrics")
    assert "grpo/reward/mean" in metrics and "grpo/response/length_tokens" in metrics
    assert fake_llm.backend.n_generated > 0  # the judge scored the completions
    assert (tmp_path / "final").exists() and not list((tmp_path / "trainer").glob("checkpoint-*"))
