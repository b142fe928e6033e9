"""The veRL entry point and trainer pieces that run without a GPU: Hydra composition, the reward pool, metrics, budget."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
from pathlib import Path
import pytest
import yaml

from r2_write.llm.base import FailureBudgetError
from r2_write.rewards.process import ProcessRewardConfig
from r2_write.rl.ppo_config import PPOConfig
from r2_write.rl.verl.overrides import hydra_args, verl_overrides
from tests.rl.verl.conftest import compose


def test_the_entry_point_composes_veRLs_config_with_the_generated_overrides(tmp_path, project_root):
    params = yaml.safe_load((project_root / "conf" / "paper" / "parameters_ppo.yml").read_text())["ppo"]
    params.pop("reward"), params.pop("launch", None)
    cfg = PPOConfig(**params)
    overrides = verl_overrides(cfg, policy_dir="/m", train_file="/d.parquet", checkpoint_dir="/c", n_prompts=64,
                               val_file="/v.parquet")  # conf/paper has the monitor on
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"reward": {}, "reward_config": {}, "process_weight": 0.5, "eos_ids": [2]}))
    out = subprocess.run([sys.executable, "-m", "r2_write.rl.verl.main", f"--r2-spec={spec}", "--cfg", "job",
                          *hydra_args(overrides)], capture_output=True, text=True, timeout=300, cwd=project_root)
    assert out.returncode == 0, out.stderr[-2000:]
    job = yaml.safe_load(out.stdout)
    assert job["reward"]["reward_manager"]["name"] == "ProcessRewardManager"
    assert job["trainer"]["use_v1"] is False and job["data"]["max_response_length"] == 25088


def test_the_entry_point_needs_the_spec(tmp_path):
    out = subprocess.run([sys.executable, "-m", "r2_write.rl.verl.main", "trainer.use_v1=false"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and out.stderr.strip().splitlines()[-1] == (
        "r2_write.rl.verl.main: --r2-spec=PATH is required (written by r2_write.rl.verl.launch)")


def test_the_task_runner_gives_the_reward_path_the_actors_pool():
    from verl.trainer.ppo.ray_trainer import Role

    from r2_write.rl.verl.main import _task_runner_class

    runner = _task_runner_class().__ray_actor_class__()
    config = compose(["reward.reward_model.enable=false"])
    runner.add_reward_model_resource_pool(config)
    assert runner.mapping[Role.RewardModel] == "global_pool"
    assert config.reward.reward_model.enable is False  # no reward model is started


def test_process_reward_numbers_reach_veRLs_data_metrics(monkeypatch):
    from verl.trainer.ppo import ray_trainer

    from r2_write.rl.verl.main import data_metrics_with_process_reward

    monkeypatch.setattr(ray_trainer, "compute_data_metrics", lambda batch, use_critic=True: {"critic/score/mean": 0.3})
    extra = {"outcome_score": [7.0, np.nan], "judged": [1.0, 0.0], "process": [0.4, 0.0], "format_violation": [0.0, 1.0],
             "n_steps": [2.0, 0.0], "n_improved": [1.0, 0.0], "n_redundant": [1.0, 0.0], "n_worsened": [0.0, 0.0],
             "n_reflections": [2.0, 1.0]}
    batch = SimpleNamespace(non_tensor_batch={k: np.array(v, dtype=object) for k, v in extra.items()})
    metrics = data_metrics_with_process_reward(ProcessRewardConfig())(batch=batch, use_critic=True)
    assert metrics["critic/score/mean"] == 0.3 and metrics["reward/format_violations"] == 1.0
    assert metrics["reward/outcome_score"] == 7.0 and metrics["reward/steps_improved_frac"] == 0.5


def test_a_judge_over_its_failure_budget_stops_the_reward_worker(tokenizer):
    from omegaconf import OmegaConf

    from r2_write.rl.verl.reward_manager import ProcessRewardManager

    class Judge:
        def counts(self):
            return {"texts": 1, "unscored": 1, "items": 5, "failed_items": 5}

        def check_budget(self, counts):
            raise FailureBudgetError(f"judge: {counts['failed_items']} of {counts['items']} items failed")

    spec = {"reward": {}, "reward_config": {}, "process_weight": 0.5, "eos_ids": [tokenizer.eos_token_id]}
    reward_fn = lambda prompts, texts, **kw: [{"outcome": 5.0, "format_violation": None, "rewards": [], "process": 0.0,  # noqa: E731
                                               "n_steps": 0, "n_improved": 0, "n_redundant": 0, "n_worsened": 0,
                                               "n_reflections": 0}]
    manager = ProcessRewardManager(OmegaConf.create({}), tokenizer, spec=spec, reward_fn=reward_fn, judge=Judge())
    with pytest.raises(FailureBudgetError, match="5 of 5 items failed"):
        manager.check_judge_budget()


def test_the_entry_point_validates_and_hands_veRL_our_task_runner(tmp_path, monkeypatch, embedded_model_dir):
    """main() up to veRL's run_ppo (which needs GPUs): config validated, spec and log path passed to the Ray workers."""
    import verl.trainer.main_ppo as main_ppo

    from r2_write.rl.verl.main import main

    cfg = PPOConfig(engine="verl", critic="separate", batch_size=2, mini_batch_size=2, max_new_tokens=64,
                    verl={"n_gpus_per_node": 1, "ulysses_sequence_parallel_size": 1})
    overrides = verl_overrides(cfg, policy_dir=str(embedded_model_dir), train_file="/d.parquet", checkpoint_dir="/c",
                               n_prompts=4)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"reward": {}, "reward_config": {}, "process_weight": 0.5, "eos_ids": [2]}))
    monkeypatch.setenv("VERL_FILE_LOGGER_PATH", str(tmp_path / "metrics.jsonl"))
    seen = {}
    monkeypatch.setattr(main_ppo, "run_ppo", lambda config, task_runner_class: seen.update(config=config, runner=task_runner_class))
    monkeypatch.setattr(sys, "argv", ["main"])
    cwd = Path.cwd()
    main([f"--r2-spec={spec}", *hydra_args(overrides), f"hydra.run.dir={tmp_path / 'hydra'}"])
    env = seen["config"].ray_kwargs.ray_init.runtime_env.env_vars
    assert env["R2_VERL_SPEC"] == str(spec) and env["VERL_FILE_LOGGER_PATH"] == str(tmp_path / "metrics.jsonl")
    assert seen["runner"].__ray_actor_class__.__name__ == "_Runner"
    assert (tmp_path / "hydra").is_dir() and Path.cwd() == cwd  # Hydra's output dir is the run's, cwd restored
