"""Reward and length dynamics: PPO with the process reward and outcome-only PPO on the same axes.

The paper's figure of "synchronized reward and length dynamics": as the process reward trains,
reward rises while responses get shorter and carry fewer redundant reflections; outcome-only
PPO is the reference drawn on the same axes. :func:`dynamics_chart` reads the per-step training
histories (``ppo.history``, ``ppo_outcome.history``: one row per PPO step, the keys of
:func:`r2_write.rl.trainer.train`'s history) and draws three panels against the step: the mean
reward, the mean response length in tokens, and the reflections per response. The share of
rollouts cut at ``max_new_tokens`` is printed in each panel's legend, because a truncated
rollout earns only the format penalty: when every rollout is cut, both variants see the same
reward and the curves lie on top of each other.
"""

from __future__ import annotations

import math

import pandas as pd
from matplotlib.figure import Figure

PANELS = (
    ("reward/mean", "Reward (mean per rollout)", "reward"),
    ("response/length_tokens", "Response length", "tokens"),
    ("response/reflections", "Reflections per response", "reflections"),
)
"""(history column, panel title, y label) of each panel, left to right."""
STYLES = {"ppo": {"color": "#1f77b4", "marker": "o"}, "ppo_outcome": {"color": "#d62728", "marker": "s", "ls": "--"}}
LABELS = {"ppo": "PPO, process reward", "ppo_outcome": "PPO, outcome only"}


def dynamics_table(histories: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The plotted values in long form: variant, step (1-based), one column per panel, truncated share.

    Args:
        histories: Variant name -> its per-step history (one row per PPO step, in order).

    Returns:
        One row per variant and step; a column missing from a history is NaN.

    >>> h = pd.DataFrame({"reward/mean": [-1.0, 0.5], "response/length_tokens": [48.0, 30.0]})
    >>> dynamics_table({"ppo": h})[["variant", "step", "reward/mean"]].values.tolist()
    [['ppo', 1, -1.0], ['ppo', 2, 0.5]]
    """
    cols = [c for c, _, _ in PANELS] + ["response/truncated_frac"]
    parts = []
    for variant, h in histories.items():
        h = h.reset_index(drop=True)
        part = pd.DataFrame({"variant": variant, "step": range(1, len(h) + 1)})
        for c in cols:
            part[c] = pd.to_numeric(h[c], errors="coerce").to_numpy() if c in h else math.nan
        parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["variant", "step", *cols])


def dynamics_chart(histories: dict[str, pd.DataFrame]) -> Figure:
    """Reward, response length and reflections per response against the PPO step, one line per variant.

    Args:
        histories: Variant name -> per-step history (``ppo`` and ``ppo_outcome`` in the pipeline;
            any names work).

    Returns:
        A figure with three axes (in :data:`PANELS` order); each line is labelled with the
        variant and its mean truncated share, e.g. ``PPO, process reward (truncated 25%)``.
    """
    data = dynamics_table(histories)
    fig = Figure(figsize=(13, 3.8))  # no pyplot: rendered by Agg on save
    axes = fig.subplots(1, len(PANELS))
    for ax, (col, title, ylabel) in zip(axes, PANELS):
        for variant, d in data.groupby("variant", sort=False):
            trunc = d["response/truncated_frac"]
            label = LABELS.get(variant, variant)
            if trunc.notna().any():
                label += f" (truncated {float(trunc.mean()):.0%})"
            ax.plot(d["step"], d[col], label=label, gid=variant, **STYLES.get(variant, {"marker": "o"}))
        ax.set(xlabel="PPO step", ylabel=ylabel, title=title)
        ax.grid(alpha=0.3)
        if len(data):
            ax.set_xticks(sorted(set(int(s) for s in data["step"])))
    axes[0].legend(fontsize=8)
    fig.suptitle("Reward and length dynamics: process reward vs outcome only", fontsize=11)
    fig.tight_layout()
    return fig
