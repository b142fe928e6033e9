"""Where training runs keep their resume checkpoints.

Each trainer (SFT, PPO, GRPO) writes ``checkpoint-<step>/`` directories on an interval into a
directory named after its configuration and inputs, so a killed ``kedro run`` finds and resumes
its own checkpoints on the next identical run and never another configuration's. A checkpoint
is complete once its ``trainer_state.json`` is written (last, by Hugging Face's Trainer and by
our PPO alike).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

CHECKPOINT_ROOT = "data/06_models/checkpoints"
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


def run_dir(name: str, settings: dict, *inputs, root: str = CHECKPOINT_ROOT) -> str:
    """``<root>/<name>-<hash>``: stable for the same training settings and inputs.

    The :data:`RESUME_SETTINGS` in ``settings`` are left out of the hash, so a resumed run
    may change its checkpoint interval.

    >>> run_dir("sft", {"lr": 1, "save_steps": 2}, "data") == run_dir("sft", {"lr": 1, "save_steps": 5}, "data")
    True
    >>> run_dir("sft", {"lr": 1}, "data") == run_dir("sft", {"lr": 2}, "data")
    False
    """
    key = hashlib.sha1(json.dumps([training_settings(settings), *inputs], sort_keys=True, default=jsonable).encode()).hexdigest()[:12]
    return f"{root}/{name}-{key}"


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
