"""The RL set in the layout veRL's ``RLHFDataset`` reads (``verl/utils/dataset/rl_dataset.py``, verl 0.9.1).

One parquet row per prompt: ``prompt`` (the chat the policy answers, :func:`r2_write.prompts.policy.policy_messages`,
the same user turn as the own rollout), ``data_source``, ``ability``, ``reward_model``
(veRL's required column; the process reward needs no ground truth) and ``extra_info`` with the
request text and its criteria (JSON), which the reward manager judges against.

The over-optimisation monitor's held-out prompts (:func:`r2_write.rl.monitor.split_prompts`) are
written the same way as veRL's validation set, with ``data_source`` :data:`MONITOR_SOURCE`: the
reward manager scores those answers with both monitor judges, and veRL groups its validation
metrics by that name (``val-aux/r2_write_monitor/monitor_gap/mean@1``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from r2_write.prompts.policy import policy_messages

DATA_SOURCE = "r2_write"
MONITOR_SOURCE = "r2_write_monitor"
"""``data_source`` of the monitor's held-out prompts (veRL's validation set)."""


def rl_records(prompts: list[str], rubrics: list[Any], data_source: str = DATA_SOURCE) -> pd.DataFrame:
    """The rows of the RL set in veRL's layout.

    >>> df = rl_records(["Write a haiku."], [[{"name": "Imagery"}]])
    >>> df.loc[0, "prompt"], df.loc[0, "extra_info"]["criteria"]
    ([{'role': 'user', 'content': 'Write a haiku.'}], '[{"name": "Imagery"}]')
    """
    if len(prompts) != len(rubrics):
        raise ValueError(f"{len(prompts)} prompts but {len(rubrics)} rubrics")
    return pd.DataFrame({
        "data_source": [data_source] * len(prompts),
        "prompt": [policy_messages(p) for p in prompts],
        "ability": ["writing"] * len(prompts),
        "reward_model": [{"style": "process_reward", "ground_truth": ""} for _ in prompts],
        "extra_info": [{"index": i, "prompt_text": p, "criteria": json.dumps(_plain(r))}
                       for i, (p, r) in enumerate(zip(prompts, rubrics))],
    })


def write_rl_set(prompts: list[str], rubrics: list[Any], path: str | Path, data_source: str = DATA_SOURCE) -> Path:
    """Write :func:`rl_records` to ``path`` (parquet); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rl_records(prompts, rubrics, data_source).to_parquet(path, index=False)
    return path


def _plain(value: Any) -> Any:
    """JSON-able rubric (numpy arrays and scalars from a parquet round trip become lists and numbers)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
