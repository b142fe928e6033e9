"""The joint reward and length dynamics plot of the two PPO variants."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from r2_write.evaluation.dynamics import PANELS, dynamics_chart, dynamics_table
from r2_write.pipelines.evaluation.nodes import plot_reward_and_length_dynamics

PPO = pd.DataFrame({"variant": "ppo", "reward/mean": [-0.5, 0.25, 0.75], "response/length_tokens": [120.0, 100.0, 90.0],
                    "response/reflections": [2.0, 1.5, 1.0], "response/truncated_frac": [0.5, 0.25, 0.0]})
OUTCOME = pd.DataFrame({"variant": "ppo_outcome", "reward/mean": [-0.5, 0.0, 0.5], "response/length_tokens": [120.0, 125.0, 130.0],
                        "response/reflections": [2.0, 2.0, 2.5], "response/truncated_frac": [0.5, 0.5, 0.5]})


def test_both_variants_on_the_same_axes_with_their_values():
    fig = plot_reward_and_length_dynamics(PPO, OUTCOME)
    assert len(fig.axes) == len(PANELS) == 3
    for ax, (col, _, _) in zip(fig.axes, PANELS):
        lines = {line.get_gid(): line for line in ax.get_lines()}
        assert set(lines) == {"ppo", "ppo_outcome"}  # one axes, both variants
        for variant, h in (("ppo", PPO), ("ppo_outcome", OUTCOME)):
            assert list(lines[variant].get_xdata()) == [1, 2, 3]
            assert list(lines[variant].get_ydata()) == h[col].tolist(), (col, variant)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["PPO, process reward (truncated 25%)", "PPO, outcome only (truncated 50%)"]


def test_missing_column_plots_nan_and_table_is_long():
    short = PPO.drop(columns=["response/reflections", "response/truncated_frac"])
    t = dynamics_table({"ppo": short, "ppo_outcome": OUTCOME.head(2)})
    assert t[["variant", "step"]].values.tolist() == [["ppo", 1], ["ppo", 2], ["ppo", 3], ["ppo_outcome", 1], ["ppo_outcome", 2]]
    assert t["response/reflections"].iloc[:3].isna().all() and t["response/reflections"].iloc[3] == 2.0
    fig = dynamics_chart({"ppo": short})
    line = fig.axes[2].get_lines()[0]
    assert all(math.isnan(y) for y in line.get_ydata())
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["PPO, process reward"]  # no share known


def test_the_pipeline_draws_it_only_with_both_ppo_variants():
    from r2_write.pipelines.evaluation.pipeline import create_pipeline

    full = create_pipeline()
    node = next(n for n in full.nodes if n.name == "plot_reward_and_length_dynamics_node")
    assert node.inputs == ["ppo.history", "ppo_outcome.history"] and node.outputs == ["evaluation.ppo_dynamics_plot"]
    compare = next(n for n in full.nodes if n.name == "compare_variants_node")
    assert compare.inputs[-3:] == ["evaluation.model_fingerprints", "ppo.history", "ppo_outcome.history"]
    only_sft = create_pipeline(variants=["base", "sft"])
    assert "plot_reward_and_length_dynamics_node" not in {n.name for n in only_sft.nodes}
    assert "ppo.history" not in only_sft.inputs()


def test_catalog_registers_the_plot_with_a_layer(project_root):
    import yaml

    catalog = yaml.safe_load((project_root / "conf" / "base" / "catalog_evaluation.yml").read_text())
    entry = catalog["evaluation.ppo_dynamics_plot"]
    assert entry["dataset"]["filepath"].endswith("ppo_dynamics.png") and entry["metadata"]["kedro-viz"]["layer"] == "reporting"

