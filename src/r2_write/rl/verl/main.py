"""The project's veRL entry point: veRL's PPO trainer, with the token-level process reward reaching GAE.

Run in veRL's environment (``make verl-env``) by :mod:`r2_write.rl.verl.launch`::

    .venv-verl/bin/python -m r2_write.rl.verl.main --r2-spec RUN/spec.json key=value ...

It is veRL's ``main_ppo`` with two classes of ours (recipe style, nothing of veRL copied):

* :class:`ProcessRewardTrainer` (a ``RayPPOTrainer``) takes veRL's non-streaming reward path:
  with ``use_rm`` set, the agent loop gets no reward workers (so it never writes one scalar on
  the last token) and ``fit`` calls ``RewardLoopManager.compute_rm_score``, whose
  ``assemble_rm_scores`` is :class:`~r2_write.rl.verl.reward_manager.ProcessRewardManager`'s:
  ``rm_scores`` -> ``token_level_scores`` -> in-reward KL -> GAE, per token.
* :class:`ProcessRewardTaskRunner` (veRL's ``TaskRunner``) builds it and gives the reward path
  the actor's resource pool (no reward model is started: ``reward.reward_model.enable`` stays false).

The over-optimisation monitor is veRL's validation: the held-out prompts are ``data.val_files``,
``trainer.test_freq`` is ``monitor.every``, and :meth:`ProcessRewardTrainer._validate` keeps veRL's
``_validate`` (generation with ``val_kwargs``, rewards through the same non-streaming path, where the
reward manager scores each held-out answer with both monitor judges) but only on the steps the own
loop measures: veRL would also validate after the last step when it is not a multiple of ``every``.

The per-sample numbers of the reward (format violations, steps improved, redundant steps) reach
veRL's metrics under the own loop's names through :func:`data_metrics_with_process_reward`.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from verl.trainer.ppo import ray_trainer
from verl.trainer.ppo.ray_trainer import RayPPOTrainer, Role

from r2_write.rewards.process import ProcessRewardConfig
from r2_write.rl.verl.reward_manager import SPEC_ENV, load_spec
from r2_write.rl.verl.rewards import EXTRA_KEYS, process_metrics

SPEC_FLAG = "--r2-spec="


class ProcessRewardTrainer(RayPPOTrainer):
    """``RayPPOTrainer`` whose rewards go through ``assemble_rm_scores`` (token level), never the streaming scalar."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # veRL streams rewards through the agent loop when no reward model is used, and that path
        # writes one scalar on the last token. use_rm routes fit() and _validate() through
        # _compute_reward_colocate -> RewardLoopManager.compute_rm_score -> assemble_rm_scores.
        self.use_rm = True

    def _validate(self, merged: bool = False):
        """veRL's validation (the monitor's measurement) on steps that are multiples of ``trainer.test_freq`` only."""
        freq = self.config.trainer.test_freq
        if freq > 0 and self.global_steps % freq:  # veRL's extra validation after a last step off the grid
            return {}
        return super()._validate(merged=merged)


def data_metrics_with_process_reward(reward_cfg: ProcessRewardConfig):
    """veRL's ``compute_data_metrics`` plus the own loop's reward metrics from the batch's reward extras."""
    base = ray_trainer.compute_data_metrics

    def compute_data_metrics(batch, use_critic: bool = True):
        metrics = base(batch=batch, use_critic=use_critic)
        extra = {key: np.asarray(batch.non_tensor_batch[key], dtype=np.float64)
                 for key in EXTRA_KEYS if key in batch.non_tensor_batch}
        metrics.update(process_metrics(extra, reward_cfg))
        return metrics

    compute_data_metrics.wrapped = base
    return compute_data_metrics


def _task_runner_class():
    import ray

    from verl.trainer.main_ppo_v0 import TaskRunner

    base = TaskRunner.__ray_actor_class__ if hasattr(TaskRunner, "__ray_actor_class__") else TaskRunner

    class _Runner(base):
        def add_reward_model_resource_pool(self, config):
            super().add_reward_model_resource_pool(config)
            self.mapping[Role.RewardModel] = "global_pool"  # the reward loop's pool; no reward model is started

        def run(self, config):
            spec = load_spec()
            ray_trainer.RayPPOTrainer = ProcessRewardTrainer  # TaskRunner.run builds the trainer by this name
            import verl.trainer.main_ppo_v0 as v0

            v0.RayPPOTrainer = ProcessRewardTrainer
            ray_trainer.compute_data_metrics = data_metrics_with_process_reward(
                ProcessRewardConfig(**spec["reward_config"]))
            return super().run(config)

    return ray.remote(num_cpus=1)(_Runner)


def main(argv: list[str] | None = None) -> None:
    """Parse ``--r2-spec=PATH``, then run veRL's PPO (Hydra over veRL's own ``ppo_trainer.yaml``) with our classes."""
    argv = list(sys.argv[1:] if argv is None else argv)
    specs = [a for a in argv if a.startswith(SPEC_FLAG)]
    if not specs:
        raise SystemExit(f"r2_write.rl.verl.main: {SPEC_FLAG}PATH is required (written by r2_write.rl.verl.launch)")
    os.environ[SPEC_ENV] = os.path.abspath(specs[-1][len(SPEC_FLAG):])
    load_spec()  # fail now, in one line, rather than inside a Ray worker
    sys.argv = [sys.argv[0]] + [a for a in argv if not a.startswith(SPEC_FLAG)]

    import hydra
    from omegaconf import open_dict

    from verl.trainer.main_ppo import run_ppo
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config
    from verl.utils.device import auto_set_device

    @hydra.main(config_path="pkg://verl.trainer.config", config_name="ppo_trainer", version_base=None)
    def _main(config):
        auto_set_device(config)
        validate_config(config=config, use_reference_policy=need_reference_policy(config),
                        use_critic=need_critic(config))
        passed = {k: os.environ[k] for k in (SPEC_ENV, "VERL_FILE_LOGGER_PATH") if k in os.environ}
        with open_dict(config):  # Ray workers: the reward loop reads the spec, the task runner's tracker the log path
            runtime_env = config.ray_kwargs.ray_init.runtime_env
            runtime_env["env_vars"] = {**(runtime_env.get("env_vars") or {}), **passed}
        run_ppo(config, task_runner_class=_task_runner_class())

    _main()


if __name__ == "__main__":
    main()
