"""The PPO node with ``ppo.launch`` (2 CPU processes): every process checks the judge budget on the summed counts,
logs ``reward/unscored``, and answers its share of the monitor's held-out prompts; the sums come back as one metric."""

from __future__ import annotations

import pandas as pd
import pytest

pytestmark = pytest.mark.slow


def test_launched_ppo_logs_unscored_and_the_monitor(tmp_path, tiny_model_dir, project_params):
    from kedro.runner import SequentialRunner

    from r2_write.pipelines.ppo import create_pipeline
    from tests.pipelines.conftest import memory_catalog

    role = {"backend": "transformers", "model": tiny_model_dir, "device": "cpu", "cache_path": None}
    params = {"batch_size": 2, "mini_batch_size": 2, "max_new_tokens": 8, "total_steps": 2, "save_every": 0,
              "learning_rate": 1e-3, "check_length_budget": False, "output_dir": str(tmp_path / "ppo"),
              "launch": {"num_processes": 2}, "monitor": {"every": 2, "prompts": 2}}
    prompts = ["Plan a lesson.", "Write an ad.", "Describe a storm.", "Name a colour."]
    catalog = memory_catalog({
        "scoring.rl_set": pd.DataFrame({"id": list("abcd"), "prompt": prompts, "criteria": [None] * 4}),
        "scoring.sft_set": pd.DataFrame({"prompt": ["Q"], "completion": ["A"]}), "sft.model": tiny_model_dir,
        "params:ppo": params, "params:llm": {"judge": role, "policy": role},
        "params:judge": project_params["judge"], "params:generic_rubric": project_params["generic_rubric"],
    }, keep=("ppo.history",))
    SequentialRunner().run(create_pipeline(), catalog)
    metrics = catalog.load("ppo_metrics")
    assert [m["value"] for m in metrics["ppo/reward/unscored"]] == [0.0, 0.0]  # probability mode never fails
    (gap,) = metrics["ppo/monitor/gap"]  # measured once, at step 2, over both processes' answers
    assert gap["value"] == 0.0  # one judge model in both roles, the same answers
    history = catalog.load("ppo.history")
    assert history["monitor/eval_score"].notna().sum() == 1 and 1.0 <= history["monitor/eval_score"].max() <= 10.0
