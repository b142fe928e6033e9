"""Reuse a finished training: a rerun with the same inputs and settings does not train again.

The response cache makes a repeated ``kedro run`` free for every model *call*; this module does
the same for the trainers (SFT, PPO, PPO outcome-only, GRPO). A finished training is stored
under ``data/06_models/trained/<name>-<key>/`` (``model/`` and ``result.json``, written last),
where the key hashes everything the trained weights depend on:

- the training settings (minus how to checkpoint: :data:`~r2_write.training.checkpoints.RESUME_SETTINGS`);
- the data (prompts, completions, rubrics) and the reward's judge settings;
- every local model by its content (:func:`~r2_write.llm.cache.model_identity`), not its versioned path;
- the r2_write source code and the versions of torch, transformers, trl, peft and accelerate,
  so a changed trainer or library never hands back a model the old code trained.

A stored model is a copy (one more checkpoint on disk per distinct training; delete the folder
to reclaim it), made read-only: the catalog versions of the model hard-link its files
(:class:`~r2_write.datasets.model_directory.ModelDirectoryDataset`), so a rerun that reuses it
adds no weights to the disk (nothing in r2_write writes into a stored or a catalog model).
``reuse_trained: false`` in a stage's parameters always trains (and stores nothing).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import stat
from collections.abc import Callable
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from r2_write.llm.cache import model_identity
from r2_write.training.checkpoints import jsonable, training_settings

TRAINED_ROOT = "data/06_models/trained"
RESULT_FILE = "result.json"
logger = logging.getLogger(__name__)


def training_key(name: str, parts: dict[str, Any]) -> str:
    """The hash of one training's inputs (``parts``), the code and the libraries.

    >>> training_key("sft", {"lr": 1}) == training_key("sft", {"lr": 1})
    True
    >>> training_key("sft", {"lr": 1}) == training_key("sft", {"lr": 2})
    False
    """
    blob = json.dumps({"name": name, "parts": parts, "code": _code_identity()}, sort_keys=True, default=jsonable)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def rl_training_parts(settings: dict, launch: Any, policy_model: str, prompts: list, rubrics: list, reward_spec: dict) -> dict:
    """The key parts of an RL training (PPO, GRPO): what to train, on which data, from which policy, judged how.

    ``reward_spec`` is the reward judge as launched processes build it
    (:func:`~r2_write.training.launch.judge_reward_spec`); every local model its ``llm`` roles name
    enters by content.
    """
    llm = reward_spec["kwargs"]["llm"] or {}
    models = {role: model_identity(str(cfg["model"])) for role, cfg in llm.items() if isinstance(cfg, dict) and cfg.get("model")}
    return {"settings": training_settings(settings), "launch": launch, "data": [prompts, rubrics],
            "policy": model_identity(policy_model), "reward": reward_spec, "models": models}


def reuse_or_train(
    name: str, parts: dict[str, Any], train: Callable[[], tuple[str, dict]], *, enabled: bool = True,
    root: str | Path | None = None,
) -> tuple[str, dict, bool]:
    """The stored result of an identical training, else ``train()``'s (then stored).

    Args:
        name: The stage (``sft``, ``ppo``...), named in the directory and the log.
        parts: Everything the result depends on besides code and libraries (JSON-able; numpy
            arrays allowed; models as :func:`~r2_write.llm.cache.model_identity`).
        train: Trains; returns (model directory, JSON-able result such as the loss history).
        enabled: False: always train, store nothing.
        root: Where finished trainings are kept (default :data:`TRAINED_ROOT`, relative to the project).

    Returns:
        (model directory, result, whether it was trained now).
    """
    if not enabled:
        return (*train(), True)
    entry = Path(root or TRAINED_ROOT) / f"{name}-{training_key(name, parts)}"
    if (entry / RESULT_FILE).is_file() and (entry / "model" / "config.json").is_file():
        logger.info("%s: reusing the model trained with the same inputs, settings and code (%s); "
                    "set %s.reuse_trained: false to train again", name, entry, name)
        return str(entry / "model"), json.loads((entry / RESULT_FILE).read_text()), False
    model_dir, result = train()
    tmp = entry.with_name(entry.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(model_dir, tmp / "model")
    (tmp / RESULT_FILE).write_text(json.dumps(result, default=jsonable))
    for path in (tmp / "model").rglob("*"):
        if path.is_file():
            path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    shutil.rmtree(entry, ignore_errors=True)
    tmp.rename(entry)
    return str(entry / "model"), result, True


@cache
def _code_identity() -> dict[str, str]:
    import r2_write

    digest = hashlib.sha256()
    for path in sorted(Path(r2_write.__file__).parent.rglob("*.py")):
        digest.update(path.read_bytes())
    versions = {}
    for dist in ("torch", "transformers", "trl", "peft", "accelerate"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {"r2_write": digest.hexdigest(), **versions}
