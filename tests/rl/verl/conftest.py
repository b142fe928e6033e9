"""veRL tests: verl 0.9.1 is installed without its dependencies by `make install-test` (see the Makefile).

These tests fail, never skip, when it is missing: the token-level reward path they check is
the reason the veRL engine exists.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def verl_config_dir() -> str:
    import verl

    return os.path.join(os.path.dirname(verl.__file__), "trainer", "config")


def compose(overrides: list[str]):
    """veRL's own ppo_trainer.yaml composed by Hydra with ``overrides`` (unknown keys fail)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=verl_config_dir(), version_base=None):
        return hydra_compose(config_name="ppo_trainer", overrides=overrides)


@pytest.fixture
def fake_judge_path(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    return "verl_fake_judge:fake_reward"


@pytest.fixture
def llm_params() -> dict:
    """Roles on a model name only: the stub veRL never calls the judge."""
    role = {"backend": "transformers", "model": "fake-model", "cache_path": None}
    return {r: dict(role) for r in ("writer", "rubric_writer", "judge", "policy")}


def local_reward_loop_manager(config, monkeypatch):
    """veRL's ``RewardLoopManager`` over one ``RewardLoopWorker`` (our ``ProcessRewardManager``), its Ray calls
    made in this process: ``compute_rm_score`` runs veRL's own reward path without a Ray cluster."""
    from functools import partial
    from types import SimpleNamespace

    from verl.experimental.reward_loop import reward_loop
    from verl.trainer.ppo.reward import resolve_reward_manager_cls

    worker = reward_loop.RewardLoopWorker(config)  # loads ProcessRewardManager from reward.reward_manager.*

    class Local:
        class compute_score_batch:  # noqa: N801 - the shape of a Ray actor method
            @staticmethod
            def remote(chunk):
                return worker.loop.run_until_complete(worker.compute_score_batch(chunk))

    monkeypatch.setattr(reward_loop.ray, "get", lambda refs: refs)
    manager = SimpleNamespace(reward_model_manager=None, reward_loop_workers=[Local()],
                              reward_manager_cls=resolve_reward_manager_cls(config))
    manager.compute_rm_score = partial(reward_loop.RewardLoopManager.compute_rm_score, manager)
    return manager
