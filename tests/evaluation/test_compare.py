"""Comparison table, markdown, charts and the reflection-effects summary."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from matplotlib.figure import Figure

from r2_write.evaluation.compare import (
    METRIC_COLUMNS,
    comparison_chart,
    comparison_table,
    count_reflections,
    prefixed,
    reflection_effects_chart,
    reflection_effects_table,
    to_markdown,
    variant_metrics,
)

WB = {
    "overall_100": 70.0,
    "domains_100": {"Education": 65.0, "Politics & Law": 75.0},
    "n_queries": 2,
    "n_unscored": 1,
}
DRG = {
    "kpr": 40.0, "kpc": 5.0, "omitted_rate": 55.0, "quality_overall": 30.0,
    "quality_100": {"Clarity": 50.0, "Support": 0.0}, "n_queries": 2, "n_unlabelled": 0, "n_unrated": 3,
}
TRAJ = "<think>\n<draft>\nd\n</draft>\n<reflection>\nr1\n</reflection>\n<revision>\nv\n</revision>\n" \
       "<reflection>\nr2\n</reflection>\n<revision>\nv2\n</revision>\n</think>\nanswer"


def test_variant_metrics_shared_names():
    responses = pd.DataFrame({"response": [TRAJ, "plain answer", "x"], "response_tokens": [100, 50, 999], "error": [None, None, "boom"]})
    m = variant_metrics(WB, DRG, responses)
    assert list(m)[: len(METRIC_COLUMNS)] == METRIC_COLUMNS
    assert m["writingbench_overall"] == 70.0 and m["writingbench_politics_law"] == 75.0
    assert math.isnan(m["writingbench_finance_business"])
    assert m["quality_clarity"] == 50.0 and math.isnan(m["quality_depth"])
    assert m["response_tokens"] == 75.0  # failed generation excluded
    assert m["reflections_per_response"] == 1.0  # (2 + 0) / 2
    assert m["kp_omitted_rate"] == 55.0 and m["quality_unrated"] == 3.0
    assert prefixed({"kpr": 1.0}) == {"eval/kpr": 1.0}
    assert prefixed({"kpr": 1.0}, "sft") == {"eval/sft/kpr": 1.0}


def test_count_reflections():
    assert count_reflections(TRAJ) == 2
    assert count_reflections("no thinking at all") == 0
    assert count_reflections("<think>\n<reflection>\nunterminated") == 0
    assert count_reflections(None) == 0


def test_comparison_table_markdown_chart():
    s1 = pd.DataFrame([{"variant": "base", "kpr": 40.0, "writingbench_overall": 60.0, "note": "x"}])
    s2 = pd.DataFrame([{"variant": "sft", "kpr": 55.5, "writingbench_overall": 71.25}])
    table = comparison_table([s1, s2])
    assert list(table["variant"]) == ["base", "sft"]
    assert list(table.columns[:2]) == ["variant", "writingbench_overall"] and table.columns[-1] == "note"
    assert math.isnan(table.loc[0, "kpc"])
    md = to_markdown(table[["variant", "writingbench_overall", "kpr", "kpc"]], title="T")
    assert md.splitlines() == [
        "## T",
        "",
        "| variant | writingbench_overall | kpr | kpc |",
        "|---|---:|---:|---:|",
        "| base | 60.0 | 40.0 | - |",
        "| sft | 71.2 | 55.5 | - |",
    ]
    fig = comparison_chart(table)
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    assert _bar_heights(fig.axes[0], "wb_overall") == {"base": 60.0, "sft": 71.25}  # the plotted values
    assert _bar_heights(fig.axes[1], "kpr") == {"base": 40.0, "sft": 55.5}
    with pytest.raises(ValueError, match="duplicate"):
        comparison_table([s1, s1])


def test_reflection_effects_table_hand_computed():
    steps = pd.DataFrame(
        {
            "domain": ["Education"] * 4 + ["Politics & Law"] * 2,
            "delta": [1.0, 0.5, -1.0, None, 0.0, 2.0],
            "effect": ["raised", "raised", "lowered", "unscored", "unchanged", "raised"],
        }
    )
    t = reflection_effects_table(steps).set_index("domain")
    assert list(t.index) == ["Politics & Law", "Education", "All"]
    edu = t.loc["Education"]
    assert (edu["steps"], edu["scored"], edu["unscored"]) == (4, 3, 1)
    assert edu["raised_share"] == pytest.approx(2 / 3) and edu["lowered_share"] == pytest.approx(1 / 3)
    assert edu["mean_delta"] == pytest.approx(0.5 / 3)
    assert t.loc["All", "raised_share"] == pytest.approx(3 / 5)
    both = reflection_effects_table(steps, {"ppo": steps.iloc[[0, 2]]})
    assert both.iloc[-1][["source", "domain", "scored", "raised_share", "lowered_share"]].tolist() == ["ppo", "All", 2, 0.5, 0.5]
    assert (t["paper_raised_share"] == 0.55).all() and (t["paper_lowered_share"] == 0.10).all()
    fig = reflection_effects_chart(t.reset_index())
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    raised = {c.get_label(): [p.get_height() for p in c] for c in ax.containers}["raised"]
    assert raised == pytest.approx([1 / 2, 2 / 3, 3 / 5])  # Politics & Law, Education, All
    assert sorted(line.get_ydata()[0] for line in ax.get_lines()) == [0.10, 0.55]  # the paper's levels


def _bar_heights(ax, tick: str) -> dict[str, float]:
    """Height of each variant's bar (its container's label) at the x tick labelled ``tick``."""
    labels = [t.get_text() for t in ax.get_xticklabels()]
    j = labels.index(tick)
    return {c.get_label(): c.patches[j].get_height() for c in ax.containers}


def test_markdown_marks_truncated_and_degenerate_cells():
    from r2_write.evaluation.compare import MARK_DEGENERATE, MARK_TRUNCATED, comparison_marks

    drg = {**DRG, "kpr": 100.0, "n_key_points": 8, "all_supported": True, "n_truncated": 0, "n_queries_unlabelled": 1}
    responses = pd.DataFrame({"response": ["a"], "response_tokens": [1], "error": [None]})
    base = variant_metrics({**WB, "n_truncated": 2}, drg, responses)
    assert base["kpr_degenerate_judge"] == 1.0 and base["judged_truncated"] == 2.0 and base["drg_queries_unlabelled"] == 1.0
    sft = variant_metrics({**WB, "n_truncated": 0}, {**DRG, "n_key_points": 8}, responses)
    assert sft["kpr_degenerate_judge"] == 0.0 and sft["judged_truncated"] == 0.0
    table = comparison_table([pd.DataFrame([{"variant": "base", **base}]), pd.DataFrame([{"variant": "sft", **sft}])])
    marks, notes = comparison_marks(table)
    assert marks[(0, "writingbench_overall")] == MARK_TRUNCATED and marks[(0, "kpr")] == MARK_DEGENERATE
    assert not any(row == 1 for row, _ in marks) and len(notes) == 2
    md = to_markdown(table[["variant", "writingbench_overall", "kpr"]], marks=marks)
    assert f"| base | 70.0 {MARK_TRUNCATED} | 100.0 {MARK_DEGENERATE} |" in md and "| sft | 70.0 | 40.0 |" in md
