"""Where training runs keep their resume checkpoints.

Each trainer (SFT, PPO, GRPO) writes ``checkpoint-<step>/`` directories on an interval into a
directory named after its configuration and inputs, so a killed ``kedro run`` finds and resumes
its own checkpoints on the next identical run and never another configuration's.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

CHECKPOINT_ROOT = "data/06_models/checkpoints"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def run_dir(name: str, *inputs, root: str = CHECKPOINT_ROOT) -> str:
    """``<root>/<name>-<hash of inputs>``: stable for the same configuration and data.

    >>> run_dir("sft", "model", {"lr": 1}) == run_dir("sft", "model", {"lr": 1})
    True
    >>> run_dir("sft", "model", {"lr": 1}) == run_dir("sft", "model", {"lr": 2})
    False
    """
    key = hashlib.sha1(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{root}/{name}-{key}"


def prune_checkpoints(output_dir: str | Path, keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest ``checkpoint-<step>`` directories; returns the deleted ones.

    ``keep <= 0`` keeps everything.
    """
    if keep <= 0:
        return []
    doomed = _checkpoints(output_dir)[:-keep]
    for path in doomed:
        shutil.rmtree(path)
    return doomed


def remove_checkpoints(output_dir: str | Path) -> list[Path]:
    """Delete every ``checkpoint-<step>`` directory (training finished: no resume needed)."""
    doomed = _checkpoints(output_dir)
    for path in doomed:
        shutil.rmtree(path)
    return doomed


def resume_point(trainer_dir: str | Path) -> str | None:
    """The newest complete Hugging Face ``Trainer`` checkpoint in ``trainer_dir``, or None.

    A checkpoint without ``trainer_state.json`` (written last) was cut off by a kill: skipped.
    """
    complete = [p for p in _checkpoints(trainer_dir) if (p / "trainer_state.json").exists()]
    return str(complete[-1]) if complete else None


def _checkpoints(output_dir: str | Path) -> list[Path]:
    """``checkpoint-<step>`` directories, oldest step first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    steps = {p: int(m.group(1)) for p in output_dir.iterdir() if (m := _CHECKPOINT_RE.match(p.name))}
    return sorted(steps, key=steps.get)
