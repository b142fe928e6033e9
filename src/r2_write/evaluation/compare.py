"""Side-by-side comparison of model variants: metric names, table, markdown, charts, MLflow runs.

Every variant is summarised by :func:`variant_metrics` under the same metric names
(:data:`METRIC_COLUMNS`, all on a 100-point scale except the length columns), so variants
line up as rows of one table (:func:`comparison_table`), as nested MLflow runs logging the
same keys (:func:`log_variant_run`, keys ``eval/<name>``), and as prefixed keys
``eval/<variant>/<name>`` in the parent run.

:func:`reflection_effects_table` summarises the synthesis reflection steps per domain (share
of steps that raised / lowered / left the judge score) beside the paper's figures, and beside
them the steps of each evaluated variant's own responses (``steps_*`` metrics).
"""

from __future__ import annotations

import logging
import math
import re

import pandas as pd
from matplotlib.figure import Figure

from r2_write.prompts.report_judge import QUALITY_CRITERIA
from r2_write.rubrics.schema import DOMAINS
from r2_write.trajectory import parse

logger = logging.getLogger(__name__)

METRIC_PREFIX = "eval"
PAPER_RAISED_SHARE = 0.55  # paper: reflection/revision helps in >55% of steps
PAPER_LOWERED_SHARE = 0.10  # ... and hurts in ~10%
EFFECTS = ("raised", "lowered", "unchanged")


def slug(name: str) -> str:
    """A metric-name-safe slug: ``"Politics & Law"`` -> ``"politics_law"``."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


WRITINGBENCH_COLUMNS = ["writingbench_overall"] + [f"writingbench_{slug(d)}" for d in DOMAINS]
DRG_COLUMNS = ["kpr", "kpc", "kp_omitted_rate", "quality_overall"] + [f"quality_{slug(c)}" for c in QUALITY_CRITERIA]
LENGTH_COLUMNS = ["response_tokens", "reflections_per_response"]
REFLECTION_COLUMNS = ["steps_raised_share", "steps_lowered_share", "steps_unchanged_share", "steps_mean_delta"]
"""Reflection->revision steps in the variant's own WritingBench responses: shares of the scored
steps (0-1, paper: >0.55 raised, ~0.10 lowered) and the mean judge-score change (1-10 scale)."""
METRIC_COLUMNS = WRITINGBENCH_COLUMNS + DRG_COLUMNS + LENGTH_COLUMNS + REFLECTION_COLUMNS
COUNT_COLUMNS = [
    "writingbench_queries", "writingbench_unscored", "drg_queries", "drg_queries_unlabelled", "kp_unlabelled",
    "quality_unrated", "judged_truncated", "writingbench_judged_truncated", "drg_judged_truncated",
    "kpr_degenerate_judge", "reflection_steps", "reflection_steps_unscored",
]
"""Bookkeeping counts and flags logged with the metrics (never compared as scores).

``judged_truncated``: texts (WritingBench answers + DeepResearchGym reports) the judge saw cut
at ``max_judged_chars`` (0 when the whole text is judged, the default); ``drg_queries_unlabelled``:
queries whose key points all failed to get a label (left out of KPR/KPC, never 0 or 100);
``kpr_degenerate_judge``: 1 when the judge labelled every key point Supported (KPR 100 says
nothing about the variant then)."""

MARK_TRUNCATED = "†"
MARK_DEGENERATE = "⚠"
MARK_IDENTICAL = "="

HEADLINE_COLUMNS = [
    "variant", "writingbench_overall", "kpr", "quality_overall", "response_tokens", "reflections_per_response",
    "steps_raised_share",
]
"""The headline table's metric columns (then ``flags``); the full table keeps every column."""
IDENTITY_COLUMNS = ["model_sha256", "same_weights_as", "same_weights_reason"]
"""Added by :func:`mark_identical_weights`: the model's content hash, the earlier variant with the
same weights (None when unique) and why they came out the same."""


def count_reflections(text: str) -> int:
    """Number of reflection segments in a (possibly malformed) trajectory.

    >>> count_reflections("<think>\\n<draft>\\nd\\n</draft>\\n<reflection>\\nr\\n</reflection>\\n</think>\\na")
    1
    """
    return sum(s.kind == "reflection" for s in parse(text or "", strict=False).segments)


def step_shares(steps: pd.DataFrame | None) -> dict[str, float]:
    """Shares of scored steps that raised / lowered / left the score, their mean delta and counts.

    >>> step_shares(pd.DataFrame({"delta": [1.0, 0.0, None], "effect": ["raised", "unchanged", "unscored"]}))["steps_raised_share"]
    0.5
    """
    steps = steps if steps is not None else pd.DataFrame(columns=["delta", "effect"])
    scored = steps[steps["effect"].isin(EFFECTS)]
    n = len(scored)
    out = {f"steps_{e}_share": float((scored["effect"] == e).mean()) if n else math.nan for e in EFFECTS}
    out["steps_mean_delta"] = float(pd.to_numeric(scored["delta"]).mean()) if n else math.nan
    out["reflection_steps"] = float(len(steps))
    out["reflection_steps_unscored"] = float(len(steps) - n)
    return out


def variant_metrics(writingbench: dict, drg: dict, responses: pd.DataFrame, steps: pd.DataFrame | None = None) -> dict[str, float]:
    """One variant's metrics under the shared names (:data:`METRIC_COLUMNS` + counts).

    Args:
        writingbench: Output of ``aggregate_writingbench``.
        drg: Output of ``aggregate_drg``.
        responses: The WritingBench responses (columns response, response_tokens, error):
            length and reflection counts are over the successfully generated ones.
        steps: The reflection->revision steps of those responses
            (``writingbench.judge_reflection_steps``); None: no step was judged (NaN shares).

    Returns:
        ``{name: value}``; scores on the 100 scale, NaN where nothing was scored; then
        ``writingbench_subset_<name>`` per requirement subset (file) evaluated.
    """
    ok = responses[responses["error"].isna()] if "error" in responses else responses
    out = {"writingbench_overall": writingbench["overall_100"]}
    out.update({f"writingbench_{slug(d)}": writingbench["domains_100"].get(d, math.nan) for d in DOMAINS})
    subsets = {f"writingbench_subset_{slug(k)}": v for k, v in writingbench.get("subsets_100", {}).items()}
    out.update({"kpr": drg["kpr"], "kpc": drg["kpc"], "kp_omitted_rate": drg["omitted_rate"]})
    out["quality_overall"] = drg["quality_overall"]
    out.update({f"quality_{slug(c)}": drg["quality_100"].get(c, math.nan) for c in QUALITY_CRITERIA})
    out["response_tokens"] = float(ok["response_tokens"].mean()) if len(ok) else math.nan
    out["reflections_per_response"] = float(ok["response"].map(count_reflections).mean()) if len(ok) else math.nan
    shares = step_shares(steps)
    out.update({c: shares[c] for c in REFLECTION_COLUMNS})
    out.update(
        {
            "writingbench_queries": writingbench["n_queries"],
            "writingbench_unscored": writingbench["n_unscored"],
            "drg_queries": drg["n_queries"],
            "drg_queries_unlabelled": drg.get("n_queries_unlabelled", 0),
            "kp_unlabelled": drg["n_unlabelled"],
            "quality_unrated": drg["n_unrated"],
            "judged_truncated": writingbench.get("n_truncated", 0) + drg.get("n_truncated", 0),
            "writingbench_judged_truncated": writingbench.get("n_truncated", 0),
            "drg_judged_truncated": drg.get("n_truncated", 0),
            "kpr_degenerate_judge": float(drg.get("all_supported", False)),
            "reflection_steps": shares["reflection_steps"],
            "reflection_steps_unscored": shares["reflection_steps_unscored"],
        }
    )
    out.update(subsets)  # one column per requirement subset (file), after the shared names
    if out["kpr_degenerate_judge"]:
        logger.warning(
            "the key-point judge labelled all %d key points Supported: KPR %.1f reflects the judge, not the variant",
            drg["n_key_points"], drg["kpr"],
        )
    return {k: float(v) for k, v in out.items()}


def prefixed(metrics: dict[str, float], variant: str | None = None) -> dict[str, float]:
    """``eval/<name>`` (nested run) or ``eval/<variant>/<name>`` (parent run) keys.

    >>> prefixed({"kpr": 50.0}, "sft")
    {'eval/sft/kpr': 50.0}
    """
    head = METRIC_PREFIX if variant is None else f"{METRIC_PREFIX}/{variant}"
    return {f"{head}/{k}": v for k, v in metrics.items()}


def log_variant_run(variant: str, metrics: dict[str, float]) -> str | None:
    """Log ``metrics`` as ``eval/<name>`` in a nested MLflow run named ``variant``.

    Every variant logs the same keys, so the MLflow UI compares them side by side. Does
    nothing (returns None) when no MLflow run is active, e.g. outside ``kedro run``.

    Returns:
        The nested run's id, or None.
    """
    import mlflow

    if mlflow.active_run() is None:
        logger.info("no active MLflow run: variant %s not logged as a nested run", variant)
        return None
    clean = {k: v for k, v in prefixed(metrics).items() if v is not None and not math.isnan(v)}
    with mlflow.start_run(run_name=f"eval/{variant}", nested=True) as run:
        mlflow.set_tags({"variant": variant, "r2_write.stage": "evaluation"})
        mlflow.log_metrics(clean)
        return run.info.run_id


def comparison_table(summaries: list[pd.DataFrame]) -> pd.DataFrame:
    """Variants x metrics table from the one-row summaries of each variant.

    Args:
        summaries: Frames with a ``variant`` column and metric columns (extra columns kept
            after the standard ones; a missing standard column is NaN).

    Returns:
        One row per variant (in the given order), columns ``variant`` + :data:`METRIC_COLUMNS`
        + counts + any other columns.
    """
    df = pd.concat(summaries, ignore_index=True) if summaries else pd.DataFrame(columns=["variant"])
    if df["variant"].duplicated().any():
        raise ValueError(f"duplicate variants in the summaries: {sorted(df['variant'][df['variant'].duplicated()])}")
    cols = ["variant"] + METRIC_COLUMNS + COUNT_COLUMNS
    extra = [c for c in df.columns if c not in cols]
    return df.reindex(columns=cols + extra).reset_index(drop=True)


def to_markdown(
    table: pd.DataFrame,
    digits: int = 1,
    title: str | None = None,
    marks: dict[tuple[int, str], str] | None = None,
    column_digits: dict[str, int] | None = None,
) -> str:
    """A GitHub-flavoured markdown table (NaN shown as "-").

    ``marks`` appends a marker to single cells: ``{(row position, column): "†"}``;
    ``column_digits`` overrides ``digits`` per column.

    >>> print(to_markdown(pd.DataFrame({"variant": ["base"], "kpr": [50.0]}), marks={(0, "kpr"): "⚠"}), end="")
    | variant | kpr |
    |---|---:|
    | base | 50.0 ⚠ |
    """
    numeric = [pd.api.types.is_numeric_dtype(table[c]) for c in table.columns]
    integer = [pd.api.types.is_integer_dtype(table[c]) for c in table.columns]
    marks = marks or {}

    column_digits = column_digits or {}

    def cell(v, num: bool, whole: bool = False, col: str = "") -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        if num and whole:
            return str(int(v))
        d = column_digits.get(col, digits)
        return f"{v:.{d}f}" if num and isinstance(v, (int, float)) else str(v).replace("|", "\\|")

    lines = [f"## {title}", ""] if title else []
    lines.append("| " + " | ".join(map(str, table.columns)) + " |")
    lines.append("|" + "|".join("---:" if n else "---" for n in numeric) + "|")
    for i, row in enumerate(table.itertuples(index=False)):
        cells = [
            cell(v, n, w, c) + (f" {marks[(i, c)]}" if (i, c) in marks else "")
            for v, n, w, c in zip(row, numeric, integer, table.columns)
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def comparison_marks(table: pd.DataFrame) -> tuple[dict[tuple[int, str], str], list[str]]:
    """Cell markers and footnotes for the comparison table.

    A variant whose judged texts were cut (``*_judged_truncated`` > 0) has that benchmark's
    score cells marked :data:`MARK_TRUNCATED`; a degenerate key-point judge
    (``kpr_degenerate_judge``) marks the KPR cell :data:`MARK_DEGENERATE`.

    Returns:
        (marks for :func:`to_markdown`, footnote lines for the marks used).
    """
    groups = {
        "writingbench_judged_truncated": [c for c in table.columns if c.startswith("writingbench_") and c not in COUNT_COLUMNS],
        "drg_judged_truncated": [c for c in DRG_COLUMNS if c in table.columns],
    }
    marks: dict[tuple[int, str], str] = {}
    used = set()
    for i, row in enumerate(table.to_dict("records")):
        for count, cols in groups.items():
            n = row.get(count)
            if n is not None and not pd.isna(n) and n > 0:
                marks.update({(i, c): MARK_TRUNCATED for c in cols})
                used.add(MARK_TRUNCATED)
        flag = row.get("kpr_degenerate_judge")
        if flag is not None and not pd.isna(flag) and flag > 0 and "kpr" in table.columns:
            marks[(i, "kpr")] = (marks.get((i, "kpr"), "") + " " + MARK_DEGENERATE).strip()
            used.add(MARK_DEGENERATE)
    notes = {
        MARK_TRUNCATED: f"{MARK_TRUNCATED} the judge saw some texts cut at `max_judged_chars` "
        "(see *_judged_truncated): not comparable with scores of whole texts.",
        MARK_DEGENERATE: f"{MARK_DEGENERATE} degenerate judge: it labelled every key point Supported, "
        "so this KPR measures the judge, not the variant.",
    }
    return marks, [notes[m] for m in (MARK_TRUNCATED, MARK_DEGENERATE) if m in used]


def model_fingerprints(models: dict[str, str]) -> pd.DataFrame:
    """Each variant's model by content: one row per variant (variant, model, model_sha256).

    A local checkpoint directory is hashed over every file's name and bytes
    (:func:`~r2_write.llm.cache.model_identity`, memoised per process), so two catalog versions
    that hold the same weights (a reused training, an update that changed nothing) match
    whatever their paths; a hosted model is named by its name.
    """
    from r2_write.llm.cache import model_identity

    return pd.DataFrame(
        [{"variant": v, "model": str(m), "model_sha256": model_identity(str(m))} for v, m in models.items()],
        columns=["variant", "model", "model_sha256"],
    )


def identical_weights_reason(first: str, second: str, histories: dict[str, pd.DataFrame] | None = None) -> str:
    """Why ``second`` came out with ``first``'s weights, read from their training histories when there are any.

    Two PPO trainings from the same policy with the same seed differ only through their rewards;
    when every step's reward was the same (typically: every rollout truncated, so both saw only
    the format penalty and the process term was 0), the updates, and so the weights, are the same.

    >>> h = pd.DataFrame({"reward/mean": [-1.0, -1.0], "reward/process": [0.0, 0.0], "response/truncated_frac": [1.0, 1.0]})
    >>> identical_weights_reason("ppo", "ppo_outcome", {"ppo": h, "ppo_outcome": h})[:60]
    'ppo and ppo_outcome saw the same reward at every step (2 ste'
    """
    histories = histories or {}
    a, b = histories.get(first), histories.get(second)
    if a is None or b is None or "reward/mean" not in a or "reward/mean" not in b:
        return (f"{first} and {second} hold byte-identical model files: the second training (or evaluation "
                f"entry) produced no change of its own")
    ra, rb = a["reward/mean"].to_numpy(dtype=float), b["reward/mean"].to_numpy(dtype=float)
    if len(ra) == len(rb) and all((x == y) or (math.isnan(x) and math.isnan(y)) for x, y in zip(ra, rb)):
        trunc = pd.concat([a, b]).get("response/truncated_frac")
        process = pd.concat([a, b]).get("reward/process")
        why = []
        if trunc is not None and trunc.notna().any():
            why.append(f"{float(trunc.mean()):.0%} of their rollouts truncated, which earn the format penalty only")
        if process is not None and process.notna().any() and float(process.abs().max()) == 0.0:
            why.append("the process term was 0 in every rollout")
        because = f" ({'; '.join(why)})" if why else ""
        return (f"{first} and {second} saw the same reward at every step ({len(ra)} steps){because}: with the same "
                f"seed and starting policy the updates were the same, so lambda made no difference; give the "
                f"rollouts room to finish (ppo.max_new_tokens) or more steps")
    return (f"{first} and {second} saw different rewards but hold byte-identical model files: the updates "
            f"did not change the stored weights (learning rate, steps)")


def mark_identical_weights(
    table: pd.DataFrame, fingerprints: pd.DataFrame, histories: dict[str, pd.DataFrame] | None = None
) -> pd.DataFrame:
    """The comparison table with :data:`IDENTITY_COLUMNS`: which variants' weights came out identical, and why.

    Args:
        table: Output of :func:`comparison_table`.
        fingerprints: Output of :func:`model_fingerprints` (variants missing there get NaN).
        histories: Training histories by variant (``<variant>.history``), read for the reason.

    Returns:
        ``table`` plus ``model_sha256``; ``same_weights_as``: the first earlier variant (table
        order) whose checkpoint directory is another one with the same content hash, else None
        (a variant that names the same directory, or the same hosted model, is listed twice on
        purpose); ``same_weights_reason``: why, else None.
    """
    out = table.copy()
    sha = dict(zip(fingerprints["variant"], fingerprints["model_sha256"]))
    where = dict(zip(fingerprints["variant"], fingerprints["model"]))
    out["model_sha256"] = [sha.get(v) for v in out["variant"]]
    first_seen: dict[str, tuple[str, str]] = {}  # hash -> (first variant, its model path)
    same, reasons = [], []
    for v, h in zip(out["variant"], out["model_sha256"]):
        seen = first_seen.get(h) if isinstance(h, str) and h.startswith("sha256:") else None
        earlier = seen[0] if seen and seen[1] != where.get(v) else None  # the same directory twice is on purpose
        same.append(earlier)
        reasons.append(identical_weights_reason(earlier, v, histories) if earlier else None)
        if isinstance(h, str):
            first_seen.setdefault(h, (v, where.get(v)))
    out["same_weights_as"] = same
    out["same_weights_reason"] = reasons
    for v, earlier, why in zip(out["variant"], same, reasons):
        if earlier:
            logger.warning("evaluation: %s has the same weights as %s: %s", v, earlier, why)
    return out


def _flag_label(mark: str, cols: list[str]) -> str:
    short = sorted({"writingbench" if c.startswith("writingbench") else "drg" for c in cols}) if mark == MARK_TRUNCATED else cols
    return f"{mark} {', '.join(short)}"


def headline_table(table: pd.DataFrame, marks: dict[tuple[int, str], str] | None = None) -> tuple[pd.DataFrame, dict]:
    """The headline: :data:`HEADLINE_COLUMNS` and a ``flags`` column, one row per distinct set of weights.

    Variants whose weights came out identical (``same_weights_as``, :func:`mark_identical_weights`)
    share one row named ``a = b`` and flagged :data:`MARK_IDENTICAL`, instead of two rows that look
    like two results. ``flags`` lists the markers of the row's cells (:func:`comparison_marks`),
    e.g. ``⚠ kpr`` for a degenerate key-point judge.

    Returns:
        (headline frame, marks re-addressed to its rows and columns, for :func:`to_markdown`).
    """
    marks = marks or {}
    same = table["same_weights_as"] if "same_weights_as" in table else pd.Series([None] * len(table))
    rows, out_marks = [], {}
    for i, row in enumerate(table.to_dict("records")):
        if isinstance(same.iloc[i], str):
            continue  # shown in the row of the variant it duplicates
        twins = [v for v, s in zip(table["variant"], same) if s == row["variant"]]
        flags: dict[str, list[str]] = {}  # marker -> its cells, in column order
        for c in table.columns:
            for one in marks.get((i, c), "").split():
                flags.setdefault(one, []).append(c)
        k = len(rows)
        out_marks.update({(k, c): m for (r, c), m in marks.items() if r == i and c in HEADLINE_COLUMNS})
        text = [_flag_label(m, cols) for m, cols in flags.items()]
        if twins:
            text.append(f"{MARK_IDENTICAL} identical weights")
        rows.append({**{c: row.get(c, math.nan) for c in HEADLINE_COLUMNS},
                     "variant": " = ".join([row["variant"], *twins]), "flags": "; ".join(text) or None})
    return pd.DataFrame(rows, columns=[*HEADLINE_COLUMNS, "flags"]), out_marks


def identical_notes(table: pd.DataFrame) -> list[str]:
    """Footnotes for variants with identical weights (one line per duplicate, with its reason)."""
    if "same_weights_as" not in table:
        return []
    return [
        f"{MARK_IDENTICAL} {v} has the same weights as {s} (model sha256 {str(h).removeprefix('sha256:')[:12]}): {why}. "
        "Their evaluation rows are one result, not two."
        for v, s, h, why in zip(table["variant"], table["same_weights_as"], table["model_sha256"], table["same_weights_reason"])
        if isinstance(s, str)
    ]


def breakdown_wide(breakdowns: list[pd.DataFrame]) -> pd.DataFrame:
    """Variants side by side in the WritingBench breakdown (domain, requirement subset, subdomain).

    Args:
        breakdowns: Each variant's ``breakdown_table`` with a ``variant`` column.

    Returns:
        Columns level, group, domain, n_queries (the most any variant had scored), then one
        column per variant (100 scale), rows in the order of the first breakdown.
    """
    keys = ["level", "group", "domain"]
    if not breakdowns:
        return pd.DataFrame(columns=[*keys, "n_queries"])
    long = pd.concat(breakdowns, ignore_index=True)
    order = long.drop_duplicates(keys)[keys]
    wide = long.pivot_table(index=keys, columns="variant", values="score_100", aggfunc="first", sort=False)
    n = long.groupby(keys, sort=False)["n_queries"].max()
    variants = list(dict.fromkeys(long["variant"]))
    out = order.merge(n.reset_index(), on=keys, how="left").merge(wide.reset_index(), on=keys, how="left")
    return out[[*keys, "n_queries", *variants]].reset_index(drop=True)


def breakdown_markdown(wide: pd.DataFrame) -> str:
    """Markdown sections of :func:`breakdown_wide`: requirement subsets, then subdomains."""
    parts = []
    subsets = wide[wide["level"] == "subset"].drop(columns=["level", "domain"]).rename(columns={"group": "subset"})
    if len(subsets):
        parts.append(to_markdown(subsets, title="WritingBench by requirement subset (100 scale)"))
    subs = wide[wide["level"] == "subdomain"].drop(columns=["level"]).rename(columns={"group": "subdomain"})
    subs = subs[["domain", "subdomain", *[c for c in subs.columns if c not in ("domain", "subdomain")]]]
    if len(subs):
        parts.append(to_markdown(subs, title="WritingBench by subdomain (domain2, 100 scale)"))
    return "\n".join(parts)


def comparison_chart(table: pd.DataFrame) -> Figure:
    """Grouped bar charts of the comparison table: WritingBench, DeepResearchGym, length.

    Flagged values (:func:`comparison_marks`: a degenerate key-point judge's KPR, scores of
    texts the judge saw cut) are drawn hatched and pale with their marker above the bar, so
    a KPR of 100 from a judge that calls everything Supported does not read as the best bar.
    Variants with identical weights (``same_weights_as``) share one bar, labelled ``a = b``.

    Args:
        table: Output of :func:`comparison_table` (optionally :func:`mark_identical_weights`).

    Returns:
        A matplotlib figure (built without pyplot; PNG rendering uses Agg).
    """
    panels = [
        ("WritingBench (100 scale)", WRITINGBENCH_COLUMNS),
        ("DeepResearchGym key points (%)", ["kpr", "kpc", "kp_omitted_rate"]),
        ("DeepResearchGym quality (100 scale)", DRG_COLUMNS[3:]),
        ("Length", LENGTH_COLUMNS),
    ]
    marks, notes = comparison_marks(table) if "variant" in table else ({}, [])
    fig = Figure(figsize=(14, 8.5 if notes else 8))  # no pyplot: no global state, rendered by Agg on save
    axes = fig.subplots(2, 2)
    same = list(table["same_weights_as"]) if "same_weights_as" in table else [None] * len(table)
    shown = [i for i in range(len(table)) if not isinstance(same[i], str)]
    labels = {i: " = ".join([table["variant"].iloc[i], *[v for v, s in zip(table["variant"], same) if s == table["variant"].iloc[i]]])
              for i in shown}
    for ax, (title, cols) in zip(axes.flat, panels):
        cols = [c for c in cols if c in table.columns]
        width = 0.8 / max(len(shown), 1)
        for k, i in enumerate(shown):
            vals = [float(table[c].iloc[i]) for c in cols]
            xs = [j + k * width for j in range(len(cols))]
            bars = ax.bar(xs, [0.0 if math.isnan(x) else x for x in vals], width, label=labels[i])
            for bar, c, x, v in zip(bars, cols, xs, vals):
                if (i, c) in marks:
                    bar.set_hatch("///")
                    bar.set_alpha(0.35)
                    bar.set_edgecolor("#b00000")
                    ax.text(x, 0.0 if math.isnan(v) else v, marks[(i, c)], ha="center", va="bottom", color="#b00000",
                            fontsize=11, gid=f"flag:{table['variant'].iloc[i]}:{c}")
        ax.set_xticks([j + width * (len(shown) - 1) / 2 for j in range(len(cols))])
        ax.set_xticklabels([c.replace("writingbench_", "wb_").replace("quality_", "q_") for c in cols], rotation=30, ha="right")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    if shown:
        axes.flat[0].legend(title="variant", fontsize=8)
    if notes:  # hatched bars are explained under the panels
        fig.text(0.01, 0.005, "hatched: " + "  ".join(n.split(":")[0] for n in notes), fontsize=8, color="#b00000")
    fig.tight_layout(rect=(0, 0.03 if notes else 0, 1, 1))
    return fig


def reflection_effects_table(steps: pd.DataFrame, variant_steps: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Per-domain shares of reflection->revision steps that raised / lowered / left the score.

    Shares are over the *scored* steps (effect raised, lowered or unchanged); unscored steps
    (a judge score missing before or after) are counted separately. The synthesis rows come
    first (source "synthesis", one per domain, then domain "All" pooling every step); then
    one row per evaluated variant (source = the variant, domain "All"): the steps in its own
    WritingBench responses. The paper reports >55% raised and ~10% lowered.

    Synthesis stops after a step that does not improve the score, so its steps hold at most
    one non-improving step per trajectory; a variant's own steps have no such rule.

    Args:
        steps: ``synthesis.steps``: columns id, domain, step, score_before, score_after,
            delta, effect (raised | lowered | unchanged | unscored).
        variant_steps: Variant name -> the steps of its responses (same columns).

    Returns:
        Columns source, domain, steps, scored, unscored, raised_share, lowered_share,
        unchanged_share, mean_delta, paper_raised_share, paper_lowered_share.
    """
    def row(source: str, domain: str, g: pd.DataFrame) -> dict:
        scored = g[g["effect"].isin(EFFECTS)]
        n = len(scored)
        out = {"source": source, "domain": domain, "steps": len(g), "scored": n, "unscored": len(g) - n}
        out.update({f"{e}_share": (scored["effect"] == e).mean() if n else math.nan for e in EFFECTS})
        out["mean_delta"] = float(pd.to_numeric(scored["delta"]).mean()) if n else math.nan
        return out

    order = [d for d in DOMAINS if d in set(steps["domain"])] + sorted(set(steps["domain"]) - set(DOMAINS))
    rows = [row("synthesis", d, steps[steps["domain"] == d]) for d in order] + [row("synthesis", "All", steps)]
    rows += [row(v, "All", s) for v, s in (variant_steps or {}).items()]
    table = pd.DataFrame(rows)
    table["paper_raised_share"] = PAPER_RAISED_SHARE
    table["paper_lowered_share"] = PAPER_LOWERED_SHARE
    return table


def reflection_effects_chart(table: pd.DataFrame) -> Figure:
    """Grouped bars of the step effect shares per domain, with the paper's levels as lines.

    Each group shows raised / unchanged / lowered side by side, so the raised bar reads
    against the paper's >55% line and the lowered bar against its ~10% line.
    """
    fig = Figure(figsize=(max(8.0, 1.6 * len(table) + 2), 4.5))
    ax = fig.subplots()
    colors = {"raised": "#4c9f70", "unchanged": "#b0b0b0", "lowered": "#d1603d"}
    width = 0.27
    for k, e in enumerate(("raised", "unchanged", "lowered")):
        vals = [0.0 if pd.isna(v) else float(v) for v in table[f"{e}_share"]]
        ax.bar([i + (k - 1) * width for i in range(len(table))], vals, width, label=e, color=colors[e])
    ax.axhline(PAPER_RAISED_SHARE, color="#2d6a4f", ls="--", lw=1, label="paper: raised >55%")
    ax.axhline(PAPER_LOWERED_SHARE, color="#9d2f1a", ls=":", lw=1, label="paper: lowered ~10%")
    ax.set_xticks(range(len(table)))
    sources = table["source"] if "source" in table else ["synthesis"] * len(table)
    labels = [d if s == "synthesis" else f"eval: {s}" for s, d in zip(sources, table["domain"])]
    ax.set_xticklabels([f"{lab}\n(n={int(n)})" for lab, n in zip(labels, table["scored"])], rotation=20, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of scored steps")
    ax.set_title("Effect of reflection -> revision steps on the judge score (synthesis; eval: variants' own responses)")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig
