"""The process reward of one veRL sample, placed on its tokens exactly as the own loop places it; metrics.

:func:`score_sample` is what the veRL reward manager runs per sample: decode the response with
the character span of each token (:func:`r2_write.rl.rollout.decode_with_offsets`, as the own
rollout), judge it with the project's reward function (:func:`r2_write.rewards.process.process_reward_fn`)
and spread the result over the tokens with :func:`r2_write.rewards.process.token_rewards` (the
function :func:`r2_write.rl.ppo.token_scores` calls). It returns the non-zero ``(position, value)``
pairs; :func:`place_scores` writes them into veRL's ``[batch, response_length]`` reward tensor.
The same tokens therefore get the same rewards, bit for bit, in both engines.

:func:`monitor_sample` scores one held-out answer of the over-optimisation monitor with both of
its judges (:func:`r2_write.rl.monitor.score_answers`, the own loop's function) on the same text.

:func:`process_metrics` turns the per-sample extras into the own loop's ``reward/*`` and
``response/*`` metrics; :data:`METRIC_MAP` renames veRL's metrics that mean the same as an own
loop metric (the rest keep their veRL name under ``verl/``); veRL's validation means of the
monitor's keys become ``monitor/eval_score``, ``monitor/reward_score`` and ``monitor/gap``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from r2_write.rewards.process import ProcessRewardConfig, normalise_score, token_rewards
from r2_write.rl.monitor import MonitorJudges, monitor_metrics, score_answers
from r2_write.rl.rollout import decode_with_offsets
from r2_write.rl.verl.dataset import MONITOR_SOURCE

# Per-sample values the reward manager hands to veRL (reward_extra_info): numbers only.
EXTRA_KEYS = ("outcome_score", "judged", "process", "format_violation", "n_steps", "n_improved", "n_redundant",
              "n_worsened", "n_reflections")


def response_cut(ids: Sequence[int], eos_ids: Sequence[int]) -> tuple[int, bool]:
    """``(tokens up to and including the first EOS, truncated)``: the own loop's ``response_mask`` and ``truncated``.

    >>> response_cut([5, 6, 2, 0], [2]), response_cut([5, 6, 7], [2])
    ((3, False), (3, True))
    """
    eos = set(eos_ids)
    for i, token in enumerate(ids):
        if token in eos:
            return i + 1, False
    return len(ids), True


def score_sample(
    tokenizer, response_ids: Sequence[int], eos_ids: Sequence[int], prompt: str, rubric: Any,
    reward_fn: Callable[..., list[dict]], reward_cfg: ProcessRewardConfig, process_weight: float,
) -> dict:
    """Judge one response and place its reward on its tokens.

    Args:
        tokenizer: The policy's tokenizer.
        response_ids: The response tokens (veRL: up to the valid length; the EOS included).
        eos_ids: End tokens (the tokenizer's and the model's generation config's).
        prompt: The writing request (the RL set's ``prompt``).
        rubric: Its criteria (the RL set's ``criteria``), or None.
        reward_fn: :func:`r2_write.rewards.process.process_reward_fn` over the reward judge.
        reward_cfg: Reward settings.
        process_weight: Lambda (``ppo.process_weight``).

    Returns:
        ``{"positions": [...], "values": [...], "extra": {EXTRA_KEYS...}}``: the tokens with a
        non-zero reward, their rewards, and the sample's numbers for the metrics.
    """
    n, truncated = response_cut(list(response_ids), eos_ids)
    text, offsets = decode_with_offsets(tokenizer, [int(t) for t in response_ids[:n]])
    result = reward_fn([prompt], [text], rubrics=[rubric], truncated=[truncated])[0]
    row = token_rewards(offsets, result, reward_cfg, process_weight)
    positions = [i for i, v in enumerate(row) if v != 0.0]
    return {"positions": positions, "values": [row[i] for i in positions], "extra": sample_extra(result)}


# Per-sample values of a monitor answer (veRL's validation): key -> the own loop's metric of their mean.
MONITOR_KEYS: dict[str, str] = {"monitor_reward_score": "monitor/reward_score", "monitor_eval_score": "monitor/eval_score",
                                "monitor_gap": "monitor/gap"}


def monitor_sample(
    tokenizer, response_ids: Sequence[int], eos_ids: Sequence[int], prompt: str, rubric: Any, judges: MonitorJudges,
) -> dict[str, float]:
    """One held-out answer scored by both monitor judges: ``{monitor_reward_score, monitor_eval_score, monitor_gap}``.

    The text is the one the reward would judge (up to the first end token, decoded as the own
    rollout decodes); :func:`r2_write.rl.monitor.score_answers` cuts the final answer out of it.
    The mean over the held-out answers of each value is the own loop's ``monitor/*`` metric (the
    gap is linear, so the mean gap is the gap of the means).
    """
    n, _ = response_cut(list(response_ids), eos_ids)
    text, _ = decode_with_offsets(tokenizer, [int(t) for t in response_ids[:n]])
    metrics = monitor_metrics(score_answers(judges, [prompt], [text], [rubric]))
    return {key: float(metrics[name]) for key, name in MONITOR_KEYS.items()}


def sample_extra(result: dict) -> dict[str, float]:
    """The numbers of one :func:`~r2_write.rewards.process.process_reward_fn` result that the metrics need."""
    judged = result["outcome"] is not None
    return {
        "outcome_score": float(result["outcome"]) if judged else float("nan"),
        "judged": float(judged),
        "process": float(result["process"]),
        "format_violation": float(bool(result.get("format_violation"))),
        "n_steps": float(result["n_steps"]),
        "n_improved": float(result["n_improved"]),
        "n_redundant": float(result["n_redundant"]),
        "n_worsened": float(result["n_worsened"]),
        "n_reflections": float(result["n_reflections"]),
    }


def place_scores(responses: torch.Tensor, samples: Sequence[dict]) -> torch.Tensor:
    """veRL's reward tensor ``[batch, response_length]`` (float32) from :func:`score_sample` results.

    >>> place_scores(torch.zeros(2, 4, dtype=torch.long), [{"positions": [0, 3], "values": [0.5, 1.0]},
    ...                                                    {"positions": [], "values": []}]).tolist()
    [[0.5, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]]
    """
    scores = torch.zeros(responses.shape, dtype=torch.float32, device=responses.device)
    for i, sample in enumerate(samples):
        if not isinstance(sample, dict) or "positions" not in sample:
            raise TypeError(f"sample {i}: expected the process reward's positions and values, got {sample!r} "
                            f"(a scalar reward would put one number on the last token)")
        if sample["positions"] and max(sample["positions"]) >= responses.shape[1]:
            raise ValueError(f"sample {i}: reward position {max(sample['positions'])} beyond the response length "
                             f"{responses.shape[1]}")
        scores[i, sample["positions"]] = torch.tensor(sample["values"], dtype=torch.float32, device=responses.device)
    return scores


def process_metrics(extra: dict[str, Sequence[float]], reward_cfg: ProcessRewardConfig) -> dict[str, float]:
    """The own loop's reward metrics (``r2_write.rl.trainer._step_metrics``) from the batch's per-sample extras.

    >>> m = process_metrics({"outcome_score": [7.0, float("nan")], "judged": [1.0, 0.0], "process": [0.4, 0.0],
    ...     "format_violation": [0.0, 1.0], "n_steps": [2.0, 0.0], "n_improved": [1.0, 0.0], "n_redundant": [1.0, 0.0],
    ...     "n_worsened": [0.0, 0.0], "n_reflections": [2.0, 1.0]}, ProcessRewardConfig())
    >>> m["reward/outcome_score"], m["reward/format_violations"], m["reward/steps_improved_frac"], m["response/steps"]
    (7.0, 1.0, 0.5, 1.0)
    """
    if not extra or "judged" not in extra:
        return {}
    rows = len(extra["judged"])
    judged = [i for i in range(rows) if extra["judged"][i]]
    steps = float(sum(extra["n_steps"]))
    nan = float("nan")

    def frac(key: str) -> float:
        return float(sum(extra[key])) / steps if steps else nan

    scores = [float(extra["outcome_score"][i]) for i in judged]
    return {
        "reward/outcome": sum(normalise_score(s, reward_cfg) for s in scores) / len(scores) if scores else nan,
        "reward/outcome_score": sum(scores) / len(scores) if scores else nan,
        "reward/process": float(sum(extra["process"])) / rows,
        "reward/format_violations": float(rows - len(judged)),
        "reward/steps_improved_frac": frac("n_improved"),
        "reward/redundant_frac": frac("n_redundant"),
        "reward/steps_worsened_frac": frac("n_worsened"),
        "response/reflections": float(sum(extra["n_reflections"])) / rows,
        "response/steps": steps / rows,
    }


# veRL metric -> the own loop's name, where both mean the same (docs/verl.md explains each row).
METRIC_MAP: dict[str, str] = {
    "critic/score/mean": "reward/mean",               # mean over rows of the summed token scores
    "critic/rewards/mean": "objective/rlhf_reward",   # the same after the KL penalty
    "response_length/mean": "response/length_tokens",
    "response_length/clip_ratio": "response/truncated_frac",
    "actor/pg_loss": "losses/policy_loss",
    "actor/entropy": "losses/entropy",
    "actor/grad_norm": "losses/grad_norm",
    "critic/vf_loss": "losses/value_loss",
    "critic/vf_clipfrac": "losses/value_clipfrac",
    "critic/grad_norm": "losses/critic_grad_norm",
    "critic/vf_explained_var": "losses/explained_variance",
    "timing_s/gen": "time/rollout",
    "timing_s/reward": "time/reward",
    "timing_s/update_actor": "time/update",
    "timing_s/update_critic": "time/critic_update",
    "timing_s/testing": "time/monitor",              # veRL's validation is the monitor's measurement
}

# veRL's validation metric of a monitor key: val-<core|aux>/<data source>/<key>/mean@<n> (n = 1 answer per prompt).
_MONITOR_VAL = re.compile(rf"^val-(?:core|aux)/{re.escape(MONITOR_SOURCE)}/(?P<key>[^/]+)/(?P<stat>[^/]+)$")


def rename_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """One veRL step's metrics under the own loop's names (:data:`METRIC_MAP`); others as ``verl/<name>``.

    Own-loop names that the reward manager already produced (``reward/*``, ``response/*``) stay.
    Non-numeric values are dropped. veRL's validation means of the monitor's keys become
    ``monitor/*`` (:data:`MONITOR_KEYS`); its other validation numbers of the monitor's prompts
    (the sum of their token rewards, 0: a held-out answer is not rewarded) are dropped.

    >>> rename_metrics({"critic/score/mean": 0.5, "actor/ppo_kl": 0.01, "reward/process": 0.1, "note": "x"})
    {'reward/mean': 0.5, 'verl/actor/ppo_kl': 0.01, 'reward/process': 0.1}
    >>> rename_metrics({"val-aux/r2_write_monitor/monitor_gap/mean@1": 1.5, "val-core/r2_write_monitor/reward/mean@1": 0.0})
    {'monitor/gap': 1.5}
    """
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if match := _MONITOR_VAL.match(key):
            if match["key"] in MONITOR_KEYS and match["stat"].startswith("mean@"):
                out[MONITOR_KEYS[match["key"]]] = float(value)
        elif key in METRIC_MAP:
            out[METRIC_MAP[key]] = float(value)
        elif key.startswith(("reward/", "response/")):
            out[key] = float(value)
        else:
            out[f"verl/{key}"] = float(value)
    return out


def steps_from_log(path: str | Path) -> dict[int, dict[str, float]]:
    """``{step: metrics}`` from veRL's ``file`` tracker (JSON lines ``{"step": n, "data": {...}}``), renamed.

    A resumed run logs its steps again from the checkpoint on: the later line of a step wins.
    """
    path = Path(path)
    if not path.exists():
        return {}
    by_step: dict[int, dict[str, float]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            entry = json.loads(line)
            by_step[int(entry["step"])] = rename_metrics(entry.get("data", {}))
    return by_step
