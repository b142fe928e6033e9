"""One home for a training stage (SFT, PPO, PPO outcome-only, GRPO): what every trainer node shares.

A training node validates its own settings and then hands the rest here:

- **the reward**, built from a JSON-able judge spec (:mod:`r2_write.rewards.spec`): the node in the
  Kedro process, every launched process and veRL's reward workers build it the same way, from the
  same ``params:llm`` / ``params:judge`` (:mod:`r2_write.roles`);
- **the run identity**, :func:`r2_write.runs.run_key` over the stage's parts (settings, data, models
  by content, the reward's judge): one key names the resume checkpoints and the finished-training store;
- **launched or in process**: with a ``launch`` block the training runs in ``accelerate launch``
  processes (:mod:`r2_write.training.launch`), else in the Kedro process;
- **reuse** of an identical finished training (:mod:`r2_write.training.reuse`);
- **the MLflow replay**: a nested run ``train/<stage>`` gets the per-step metrics, live when the
  trainer logs in process, replayed from the history when it was launched or reused.

::

    result = train_stage(Stage(name="sft", parts=..., in_process=..., launched=..., launch=launch))
    result.model_dir, result.result, result.fresh
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from r2_write.llm.cache import model_identity
from r2_write.runs import checkpoint_dir, run_key, training_settings
from r2_write.tracking import NestedRunLogger
from r2_write.training.reuse import reuse_or_train

logger = logging.getLogger(__name__)

def rl_parts(settings: dict, launch: Any, policy_model: str, prompts: list, rubrics: list, spec: dict) -> dict:
    """The identity parts of an RL training (PPO, GRPO): settings, data, policy, reward judge, its local models.

    Every local model the judge's ``llm`` roles name enters by content, not by path.
    """
    llm = spec["kwargs"].get("llm") or {}
    models = {role: model_identity(str(cfg["model"])) for role, cfg in llm.items() if isinstance(cfg, dict) and cfg.get("model")}
    return {"settings": training_settings(settings), "launch": launch, "data": [prompts, rubrics],
            "policy": model_identity(policy_model), "reward": spec, "models": models}


# ----------------------------------------------------------------------------- the stage


@dataclass
class Stage:
    """One training, as its node describes it.

    Attributes:
        name: ``sft``, ``ppo``, ``ppo_outcome`` or ``grpo`` (directories, MLflow run, log lines).
        parts: What the weights depend on besides code (:func:`r2_write.runs.run_key`).
        in_process: ``(output_dir, log) -> (model_dir, result)``: trains in this process; ``log(metrics, step)``
            writes a step to the nested MLflow run (a trainer that does not call it is replayed afterwards).
        launched: ``(launch, output_dir) -> (model_dir, result)``: the same training in launched processes.
        launch: The validated ``<stage>.launch`` block, or None (in process).
        output_dir: The user's ``output_dir``, or None: the run identity's checkpoint directory.
        reuse: Reuse an identical finished training (``<stage>.reuse_trained``).
        log_params: Parameters of the nested MLflow run; None: no nested run.
        rows: ``result -> per-step metric rows`` for the replay (default: ``result["history"]``).
    """

    name: str
    parts: dict
    in_process: Callable[[str, Callable | None], tuple[str, dict]]
    launched: Callable[[Any, str], tuple[str, dict]] | None = None
    launch: Any = None
    output_dir: str | None = None
    reuse: bool = True
    log_params: dict | None = None
    rows: Callable[[dict], list[dict]] = field(default=lambda result: result.get("history", []))


@dataclass
class StageResult:
    model_dir: str
    result: dict
    fresh: bool
    output_dir: str


def stage_output_dir(stage: Stage) -> str:
    """Where the stage's resume checkpoints go: the user's ``output_dir`` or the run identity's directory."""
    return stage.output_dir or checkpoint_dir(stage.name, run_key(stage.name, stage.parts))


def train_stage(stage: Stage) -> StageResult:
    """Train (launched or in process), or reuse an identical finished training; log its steps to MLflow once."""
    output_dir = stage_output_dir(stage)
    logged_live: list[bool] = [False]

    def run() -> tuple[str, dict]:
        if stage.launch is not None:
            if stage.launched is None:
                raise ValueError(f"{stage.name}: this stage cannot be launched")
            return stage.launched(stage.launch, output_dir)
        if stage.log_params is None:
            return stage.in_process(output_dir, None)
        with NestedRunLogger(stage.name, stage.log_params) as log:
            model_dir, result = stage.in_process(output_dir, log)
            logged_live[0] = bool(log.history)
        return model_dir, result

    model_dir, result, fresh = reuse_or_train(stage.name, stage.parts, run, enabled=stage.reuse)
    if stage.log_params is not None and not logged_live[0]:  # launched, reused, or a trainer that logs at the end
        with NestedRunLogger(stage.name, stage.log_params) as log:
            for step, row in enumerate(stage.rows(result), start=1):
                log(row, step)
    return StageResult(model_dir, result, fresh, output_dir)
