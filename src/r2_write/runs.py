"""A training run's identity and its checkpoints: one key, two directories.

A training (SFT, PPO, PPO outcome-only, GRPO) is identified by ONE hash, :func:`run_key`, of
what its weights depend on: the stage name, its settings (less how to checkpoint:
:data:`RESUME_SETTINGS`), its data, its models by content, its reward's judge, the r2_write source
and the versions of the training libraries. The same key names

- its resume directory, ``data/06_models/checkpoints/<name>-<key>/`` (:func:`checkpoint_dir`),
  where the trainer writes ``checkpoint-<step>/`` on an interval, so a killed ``kedro run`` resumes
  its own checkpoints on the next identical run and never another configuration's; and
- its finished-training store, ``data/06_models/trained/<name>-<key>/``
  (:mod:`r2_write.training.reuse`), so an identical rerun does not train again.

A checkpoint is complete once its ``trainer_state.json`` is written (last, by Hugging Face's
Trainer and by our PPO alike). Both ``r2_write.rl`` and ``r2_write.training`` import this module;
it imports neither.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

CHECKPOINT_ROOT = "data/06_models/checkpoints"
TRAINED_ROOT = "data/06_models/trained"
STATE_FILE = "trainer_state.json"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
# settings that say how to checkpoint, not what to train: changing them keeps the run directory
RESUME_SETTINGS = frozenset(
    {"output_dir", "save_steps", "save_total_limit", "save_every", "keep_checkpoints", "cleanup_checkpoints", "reuse_trained"}
)


class CheckpointParams(BaseModel):
    """The resume settings of the Hugging Face trainers (SFT, GRPO); PPOConfig has its own twins."""

    model_config = ConfigDict(extra="forbid")

    save_steps: int = Field(0, ge=0, description="Checkpoint every N steps so a killed run resumes (0: only the final model).")
    save_total_limit: int = Field(1, ge=1, description="Newest checkpoints kept on disk.")
    cleanup_checkpoints: bool = Field(True, description="Delete the resume checkpoints once training finished (the final model stays).")
    output_dir: str | None = Field(None, description="Checkpoint directory (default: one per configuration and data under data/06_models/checkpoints).")
    reuse_trained: bool = Field(True, description="Reuse the model of an identical finished training (same data, settings, "
                                "models and code) instead of training again (r2_write.training.reuse).")


def hf_checkpoint_args(cfg: CheckpointParams) -> dict[str, Any]:
    """``TrainingArguments`` keywords for ``cfg``'s checkpoint interval.

    >>> hf_checkpoint_args(CheckpointParams())
    {'save_strategy': 'no'}
    >>> hf_checkpoint_args(CheckpointParams(save_steps=5, save_total_limit=2))
    {'save_strategy': 'steps', 'save_steps': 5, 'save_total_limit': 2}
    """
    if not cfg.save_steps:
        return {"save_strategy": "no"}
    return {"save_strategy": "steps", "save_steps": cfg.save_steps, "save_total_limit": cfg.save_total_limit}


def training_settings(settings: dict) -> dict:
    """``settings`` without the :data:`RESUME_SETTINGS` (what to train, not how to checkpoint it)."""
    return {k: v for k, v in settings.items() if k not in RESUME_SETTINGS}


def run_key(name: str, parts: dict[str, Any]) -> str:
    """The one identity of a training: a hash of its stage name, ``parts``, the code and the libraries.

    ``parts`` holds everything the trained weights depend on besides code (JSON-able; numpy
    arrays allowed; local models as :func:`~r2_write.llm.cache.model_identity`). Its
    ``settings`` entry, if any, is hashed without the :data:`RESUME_SETTINGS`, so a resumed run may
    change its checkpoint interval.

    >>> run_key("sft", {"settings": {"lr": 1, "save_steps": 2}}) == run_key("sft", {"settings": {"lr": 1, "save_steps": 5}})
    True
    >>> run_key("sft", {"settings": {"lr": 1}}) == run_key("sft", {"settings": {"lr": 2}})
    False
    """
    if isinstance(parts.get("settings"), dict):
        parts = {**parts, "settings": training_settings(parts["settings"])}
    blob = json.dumps({"name": name, "parts": parts, "code": _code_identity()}, sort_keys=True, default=jsonable)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def checkpoint_dir(name: str, key: str, root: str = CHECKPOINT_ROOT) -> str:
    """``<root>/<name>-<key>``: where the training with :func:`run_key` ``key`` writes its resume checkpoints."""
    return f"{root}/{name}-{key}"


@cache
def _code_identity() -> dict[str, str | None]:
    """The r2_write source (every .py file) and the versions of the libraries that train."""
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


def jsonable(value: Any) -> Any:
    """JSON for what training keys hash besides JSON types: numpy arrays (parquet list columns) in full, models by dump.

    >>> jsonable(np.array([["a", "b"]] * 600)) == [["a", "b"]] * 600  # str() would elide the middle
    True
    """
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "model_dump"):
        return value.model_dump()
    return str(value)


def prune_checkpoints(output_dir: str | Path, keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest ``checkpoint-<step>`` directories; returns the deleted ones.

    ``keep <= 0`` keeps everything.
    """
    return _delete(_checkpoints(output_dir)[:-keep]) if keep > 0 else []


def remove_checkpoints(output_dir: str | Path) -> list[Path]:
    """Delete every ``checkpoint-<step>`` directory (training finished: no resume needed)."""
    return _delete(_checkpoints(output_dir))


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The complete ``checkpoint-<step>`` directory with the highest step, or None.

    A checkpoint without its state file (written last) was cut off by a kill: skipped.
    """
    complete = [p for p in _checkpoints(output_dir) if (p / STATE_FILE).exists()]
    return complete[-1] if complete else None


def _checkpoints(output_dir: str | Path) -> list[Path]:
    """``checkpoint-<step>`` directories, oldest step first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    steps = {p: int(m.group(1)) for p in output_dir.iterdir() if (m := _CHECKPOINT_RE.match(p.name))}
    return sorted(steps, key=steps.get)


def _delete(paths: list[Path]) -> list[Path]:
    for path in paths:
        shutil.rmtree(path)
    return paths
