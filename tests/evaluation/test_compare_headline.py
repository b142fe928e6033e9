"""The comparison's headline table, flagged bars and identical-weights detection."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from r2_write.evaluation.compare import (
    HEADLINE_COLUMNS,
    MARK_DEGENERATE,
    MARK_IDENTICAL,
    MARK_TRUNCATED,
    comparison_chart,
    comparison_marks,
    comparison_table,
    headline_table,
    identical_notes,
    identical_weights_reason,
    mark_identical_weights,
    model_fingerprints,
)
from r2_write.pipelines.evaluation.nodes import compare_variants, fingerprint_models


def _row(variant: str, wb: float, kpr: float, **extra) -> pd.DataFrame:
    return pd.DataFrame([{"variant": variant, "writingbench_overall": wb, "kpr": kpr, "quality_overall": 30.0,
                          "response_tokens": 80.0, "reflections_per_response": 1.5, "steps_raised_share": 0.25,
                          "kpr_degenerate_judge": 0.0, **extra}])


def _model(path, weights: bytes):
    path.mkdir()
    (path / "config.json").write_text("{}")
    (path / "model.safetensors").write_bytes(weights)
    return str(path)


def _history(rewards, process, truncated, variant):
    return pd.DataFrame({"variant": variant, "reward/mean": rewards, "reward/process": process,
                         "response/truncated_frac": truncated, "response/length_tokens": [48.0] * len(rewards)})


def test_fingerprints_find_identical_weights_whatever_the_path(tmp_path):
    models = {"sft": _model(tmp_path / "sft", b"A"), "ppo": _model(tmp_path / "ppo", b"B"),
              "ppo_outcome": _model(tmp_path / "v2", b"B"), "api": "gpt-4o-mini"}
    fp = model_fingerprints(models)
    assert list(fp["variant"]) == list(models)
    assert fp.loc[1, "model_sha256"] == fp.loc[2, "model_sha256"] != fp.loc[0, "model_sha256"]
    assert fp.loc[3, "model_sha256"] == "gpt-4o-mini"
    # the node takes one loaded model per distinct dataset
    node = fingerprint_models(models["sft"], models["ppo"], variants={"base": "base_model", "sft": "base_model", "ppo": "ppo.model"})
    assert list(node["variant"]) == ["base", "sft", "ppo"] and node["model_sha256"].nunique() == 2
    with pytest.raises(ValueError, match="2 model datasets"):
        fingerprint_models(models["sft"], variants={"a": "x.model", "b": "y.model"})


def test_identical_ppo_variants_share_one_headline_row_with_the_reason(tmp_path):
    models = {"sft": _model(tmp_path / "sft", b"A"), "ppo": _model(tmp_path / "ppo", b"B"),
              "ppo_outcome": _model(tmp_path / "ppo_outcome", b"B")}
    cut = _history([-1.0, -1.0], [0.0, 0.0], [1.0, 1.0], "ppo")
    table = comparison_table([_row("sft", 60.0, 40.0), _row("ppo", 61.0, 41.0), _row("ppo_outcome", 61.0, 41.0)])
    marked = mark_identical_weights(table, model_fingerprints(models), {"ppo": cut, "ppo_outcome": cut.assign(variant="ppo_outcome")})
    assert [s if isinstance(s, str) else None for s in marked["same_weights_as"]] == [None, None, "ppo"]
    why = marked.loc[2, "same_weights_reason"]
    assert "same reward at every step (2 steps)" in why and "100% of their rollouts truncated" in why
    assert "process term was 0" in why
    head, _ = headline_table(marked, comparison_marks(marked)[0])
    assert list(head.columns) == [*HEADLINE_COLUMNS, "flags"]
    assert head["variant"].tolist() == ["sft", "ppo = ppo_outcome"]
    assert head.loc[1, "flags"] == f"{MARK_IDENTICAL} identical weights" and pd.isna(head.loc[0, "flags"])
    notes = identical_notes(marked)
    assert len(notes) == 1 and notes[0].startswith(f"{MARK_IDENTICAL} ppo_outcome has the same weights as ppo")

    _, md, fig, _ = compare_variants(*[marked[["variant", *HEADLINE_COLUMNS[1:]]].iloc[[i]] for i in range(3)],
                                     model_fingerprints(models), cut, cut.assign(variant="ppo_outcome"))
    headline, detail = md.split("\n## ")[0], md.split("\n## ")[1]
    assert "| ppo = ppo_outcome |" in headline and headline.count("\n| ") == 3  # header + 2 results
    assert "same reward at every step" in headline
    assert detail.startswith("Full detail") and "| ppo_outcome |" in detail  # the detail keeps every variant
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["sft", "ppo = ppo_outcome"]  # one bar for one set of weights


def test_reason_without_histories_and_with_different_rewards():
    assert "byte-identical" in identical_weights_reason("sft", "ppo")
    a, b = _history([0.1, 0.2], [0.1, 0.0], [0.0, 0.0], "ppo"), _history([0.1, 0.3], [0.0, 0.0], [0.0, 0.0], "ppo_outcome")
    assert "different rewards" in identical_weights_reason("ppo", "ppo_outcome", {"ppo": a, "ppo_outcome": b})


def test_distinct_weights_print_every_variant():
    fp = pd.DataFrame({"variant": ["ppo", "ppo_outcome"], "model": ["a", "b"], "model_sha256": ["sha256:1", "sha256:2"]})
    _, md, _, _ = compare_variants(_row("ppo", 61.0, 41.0), _row("ppo_outcome", 58.0, 39.0), fp)
    headline = md.split("\n## ")[0]
    assert "| ppo | 61.0 |" in headline and "| ppo_outcome | 58.0 |" in headline and MARK_IDENTICAL + " " not in headline


def test_headline_leads_and_flags_a_degenerate_judge():
    base = _row("base", 70.0, 100.0, kpr_degenerate_judge=1.0, drg_judged_truncated=0.0, writingbench_judged_truncated=2.0)
    _, md, _, _ = compare_variants(base, _row("sft", 72.0, 40.0))
    assert md.startswith("## R2-Write evaluation: headline")
    header = md.splitlines()[2]
    assert header == "| " + " | ".join([*HEADLINE_COLUMNS, "flags"]) + " |"
    base_line = next(line for line in md.splitlines() if line.startswith("| base |"))
    assert f"100.0 {MARK_DEGENERATE}" in base_line and f"70.0 {MARK_TRUNCATED}" in base_line
    assert base_line.rstrip(" |").endswith(f"{MARK_TRUNCATED} writingbench; {MARK_DEGENERATE} kpr")
    assert next(line for line in md.splitlines() if line.startswith("| sft |")).endswith("| - |")  # no flag
    assert "## Full detail: variants x metrics" in md and md.index("Full detail") > md.index("| sft |")


def test_chart_draws_a_flagged_kpr_hatched_and_marked():
    """A degenerate judge's KPR of 100 must not look like the best bar: hatched, pale, marked."""
    table = comparison_table([_row("base", 70.0, 100.0, kpr_degenerate_judge=1.0), _row("sft", 72.0, 40.0)])
    fig = comparison_chart(table)
    ax = fig.axes[1]  # DeepResearchGym key points
    j = [t.get_text() for t in ax.get_xticklabels()].index("kpr")
    bars = {c.get_label(): c.patches[j] for c in ax.containers}
    assert bars["base"].get_height() == 100.0 and bars["sft"].get_height() == 40.0  # values as given
    assert bars["base"].get_hatch() == "///" and bars["base"].get_alpha() == pytest.approx(0.35)
    assert not bars["sft"].get_hatch() and bars["sft"].get_alpha() is None
    flags = [t for t in ax.texts if (t.get_gid() or "").startswith("flag:")]
    assert [(t.get_gid(), t.get_text(), t.get_position()[1]) for t in flags] == [("flag:base:kpr", MARK_DEGENERATE, 100.0)]
    assert math.isclose(flags[0].get_position()[0], bars["base"].get_x() + bars["base"].get_width() / 2)


def test_the_same_directory_or_hosted_model_twice_is_not_flagged(tmp_path):
    one = _model(tmp_path / "m", b"A")
    fp = model_fingerprints({"base": one, "sft": one, "api": "gpt-4o-mini", "api2": "gpt-4o-mini"})
    table = comparison_table([_row(v, 60.0, 40.0) for v in ("base", "sft", "api", "api2")])
    marked = mark_identical_weights(table, fp)
    assert not any(isinstance(s, str) for s in marked["same_weights_as"])
    assert len(headline_table(marked)[0]) == 4
