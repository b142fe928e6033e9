"""Reuse a finished training: a rerun with the same inputs and settings does not train again.

The response cache makes a repeated ``kedro run`` free for every model *call*; this module does
the same for the trainers (SFT, PPO, PPO outcome-only, GRPO). A finished training is stored
under ``data/06_models/trained/<name>-<key>/`` (``model/`` and ``result.json``, written last),
where the key is the training's one identity, :func:`r2_write.runs.run_key` (settings, data,
models by content, the reward's judge, code and library versions), the same key that names its
resume checkpoints, so a changed trainer or library never hands back a model the old code trained.

A stored model is a copy (one more checkpoint on disk per distinct training; delete the folder
to reclaim it), made read-only: the catalog versions of the model hard-link its files
(:class:`~r2_write.catalog.model_directory.ModelDirectoryDataset`), so a rerun that reuses it
adds no weights to the disk (nothing in r2_write writes into a stored or a catalog model).
``reuse_trained: false`` in a stage's parameters always trains (and stores nothing).
"""

from __future__ import annotations

import json
import logging
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from r2_write.runs import TRAINED_ROOT, jsonable, run_key

RESULT_FILE = "result.json"
logger = logging.getLogger(__name__)


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
    entry = Path(root or TRAINED_ROOT) / f"{name}-{run_key(name, parts)}"
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
