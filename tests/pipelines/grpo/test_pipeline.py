"""The GRPO pipeline run by SequentialRunner on a tiny random Llama (TRL's GRPOTrainer, seconds)."""

from __future__ import annotations

from kedro.runner import SequentialRunner

from r2_write.pipelines.grpo import create_pipeline as grpo_pipeline
from tests.pipelines.training_inputs import rl_catalog


def test_grpo_pipeline(tiny_model_dir, project_params, llm_params, fake_llm, tmp_path):
    params = {"max_steps": 1, "per_device_train_batch_size": 2, "num_generations": 2, "max_completion_length": 8, "learning_rate": 1e-3,
              "save_steps": 1, "output_dir": str(tmp_path)}
    catalog = rl_catalog(tiny_model_dir, project_params, llm_params, "grpo", params)
    SequentialRunner().run(grpo_pipeline(), catalog)
    assert (catalog.load("grpo.model"))
    metrics = catalog.load("grpo_metrics")
    assert "grpo/reward/mean" in metrics and "grpo/response/length_tokens" in metrics
    # 8 tokens cannot hold a trajectory: every completion is truncated, gets the format penalty, and is never judged
    assert fake_llm.backend.n_generated == 0
    assert [m["value"] for m in metrics["grpo/reward/mean"]] == [-1.0]
    assert (tmp_path / "final").exists() and not list((tmp_path / "trainer").glob("checkpoint-*"))

