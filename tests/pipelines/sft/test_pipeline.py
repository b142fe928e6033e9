"""The SFT pipeline run by SequentialRunner on a tiny random Llama (TRL's SFTTrainer, seconds)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from kedro.runner import SequentialRunner

from r2_write.pipelines.sft import create_pipeline as sft_pipeline
from r2_write.pipelines.sft.nodes import train_sft_model
from tests.pipelines.conftest import memory_catalog
from tests.pipelines.training_inputs import weights_equal


def test_sft_pipeline_trains_and_saves_a_loadable_checkpoint(tiny_model_dir, tmp_path):
    sft_set = pd.DataFrame({"prompt": ["Write a haiku.", "Write a memo."],
                            "completion": ["<think>\n<plan>\np\n</plan>\n</think>\nA haiku.", "<think>\n</think>\nA memo."]})
    catalog = memory_catalog({"scoring.sft_set": sft_set, "base_model": tiny_model_dir,
                              "params:sft": {"max_steps": 2, "per_device_train_batch_size": 2, "max_length": 128, "learning_rate": 1e-3,
                                             "save_steps": 1, "output_dir": str(tmp_path / "sft")}})
    SequentialRunner().run(sft_pipeline(), catalog)
    model_dir = catalog.load("sft.model")
    assert not weights_equal(model_dir, tiny_model_dir)  # the weights moved
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



def test_an_identical_rerun_reuses_the_model_and_reuse_trained_false_trains(monkeypatch, tiny_model_dir, tmp_path):
    sft_set = pd.DataFrame({"prompt": ["Q"] * 2, "completion": ["<think>\n</think>\nA"] * 2})
    params = {"max_steps": 1, "max_length": 64, "learning_rate": 1e-2, "output_dir": str(tmp_path)}
    first, metrics = train_sft_model(sft_set, tiny_model_dir, params)
    monkeypatch.setattr("r2_write.pipelines.sft.nodes.train_sft", lambda *a: (_ for _ in ()).throw(AssertionError("trained again")))
    again, metrics_again = train_sft_model(sft_set, tiny_model_dir, params)
    assert again == first and metrics_again == metrics
    with pytest.raises(AssertionError, match="trained again"):
        train_sft_model(sft_set, tiny_model_dir, {**params, "reuse_trained": False})
