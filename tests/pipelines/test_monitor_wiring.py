"""The PPO and GRPO nodes log ``reward/unscored`` and the over-optimisation monitor to MLflow and draw it in the stage PNG."""

from __future__ import annotations

import pytest
from kedro.runner import SequentialRunner

from r2_write.pipelines.grpo import create_pipeline as grpo_pipeline
from r2_write.pipelines.ppo import create_pipeline as ppo_pipeline
from tests.pipelines.training_inputs import PPO_TINY, rl_catalog

GRPO_TINY = {"max_steps": 2, "per_device_train_batch_size": 2, "num_generations": 2, "max_completion_length": 8,
             "learning_rate": 1e-3, "save_steps": 1}


@pytest.mark.parametrize("variant", ["ppo", "grpo"])
def test_the_node_logs_unscored_texts_and_the_monitor_per_step(variant, tmp_path, tiny_model_dir, project_params,
                                                               llm_params, fake_llm):
    tiny, pipe = (PPO_TINY, ppo_pipeline) if variant == "ppo" else (GRPO_TINY, grpo_pipeline)
    params = {**tiny, "output_dir": str(tmp_path / variant), "monitor": {"every": 1, "prompts": 1}}
    catalog = rl_catalog(tiny_model_dir, project_params, llm_params, variant, params)
    SequentialRunner().run(pipe(), catalog)
    metrics = catalog.load(f"{variant}_metrics")
    # 8 tokens never hold a trajectory: every rollout gets the format penalty and is never judged (0 unscored)
    assert [m["value"] for m in metrics[f"{variant}/reward/unscored"]] == [0.0, 0.0]
    assert [m["step"] for m in metrics[f"{variant}/monitor/gap"]] == [0, 1]  # measured every step (0-based here)
    # no eval_judge in params:llm: it falls back to the same judge, which scores the same answers alike
    assert all(m["value"] == 0.0 for m in metrics[f"{variant}/monitor/gap"])
    assert all(1.0 <= m["value"] <= 10.0 for m in metrics[f"{variant}/monitor/eval_score"])
    axes = catalog.load(f"{variant}_curves").get_axes()
    assert [ax.get_title() for ax in axes] == ["Reward", "Response length", "Held-out: reward judge vs eval judge"]
    assert any(call for batch in fake_llm.backend.batches for call in batch)  # the judges were asked
