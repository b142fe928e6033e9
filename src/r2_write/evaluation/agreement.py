"""Human agreement with the LLM judge: sample judged items for labelling, then measure agreement.

Workflow::

    # 1. write a CSV template of 50 judged criteria with an empty human_score column
    python -m r2_write.evaluation.agreement sample \\
        --judged data/08_reporting/evaluation/base/writingbench_scores.parquet/<version>/writingbench_scores.parquet \\
        --responses data/08_reporting/evaluation/base/writingbench_responses.parquet/<version>/writingbench_responses.parquet \\
        --n 50 --seed 0 --out human_labels.csv
    # 2. people fill human_score (same scale as the judge, blind to the score column if you hide it)
    # 3. report agreement
    python -m r2_write.evaluation.agreement report --labels human_labels.csv --binning band

Agreement definition (the paper reports ~90% human-judge agreement without defining it; we
document ours): both scores are mapped to bins and **agreement_pct** is the share of items
whose bins differ by at most ``tolerance`` bins (default 0: the same bin), x100.
**cohens_kappa** is Cohen's unweighted kappa on the same bins (chance-corrected exact bin
match; it ignores ``tolerance``). Binnings:

* ``band`` (default): the WritingBench score bands 1-2, 3-4, 5-6, 7-8, 9-10;
* ``exact``: the score rounded to an integer (use ``tolerance=1`` for "within 1 point");
* ``label``: categorical labels compared as strings (DeepResearchGym key points).

Rows whose ``human_score`` is empty are ignored; ``n`` counts the rows compared.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import pandas as pd

Binning = Literal["band", "exact", "label"]
JUDGE_COLUMN, HUMAN_COLUMN = "score", "human_score"


def sample_for_human_labels(judged: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """A random sample of judged items with an empty ``human_score`` column to fill in.

    Args:
        judged: One judged item per row (e.g. ``writingbench_scores``, optionally joined
            with the responses); items without a judge score are left out.
        n: Sample size (all scored items if there are fewer).
        seed: Sampling seed (same seed, same sample).

    Returns:
        The sampled rows (original order), their columns plus ``human_score`` (empty).
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if JUDGE_COLUMN not in judged.columns:
        raise ValueError(f"judged frame needs a {JUDGE_COLUMN!r} column (the judge's score or label)")
    pool = judged[judged[JUDGE_COLUMN].notna()]
    out = pool.sample(n=min(n, len(pool)), random_state=seed).sort_index().reset_index(drop=True)
    out[HUMAN_COLUMN] = pd.Series([None] * len(out), dtype="object")
    return out


def _bins(values: pd.Series, binning: Binning) -> pd.Series:
    if binning == "label":
        return values.astype(str).str.strip().str.lower()
    x = pd.to_numeric(values, errors="raise").round().astype(int)
    if binning == "exact":
        return x
    if binning == "band":
        return ((x.clip(1, 10) - 1) // 2).astype(int)  # 1-2 -> 0, ..., 9-10 -> 4
    raise ValueError(f"unknown binning {binning!r}; choose band, exact or label")


def cohens_kappa(a: Sequence, b: Sequence) -> float:
    """Cohen's unweighted kappa between two raters' categorical labels.

    ``(p_o - p_e) / (1 - p_e)``; when chance agreement is certain (``p_e == 1``) the value
    is 1.0 if the raters agree on everything, else NaN.

    >>> round(cohens_kappa([1, 1, 0, 0], [1, 0, 0, 0]), 4)
    0.5
    """
    a, b = list(a), list(b)
    if len(a) != len(b):
        raise ValueError("both raters must label the same items")
    n = len(a)
    if n == 0:
        return math.nan
    p_o = sum(x == y for x, y in zip(a, b)) / n
    cats = set(a) | set(b)
    p_e = sum((a.count(c) / n) * (b.count(c) / n) for c in cats)
    if p_e == 1.0:
        return 1.0 if p_o == 1.0 else math.nan
    return (p_o - p_e) / (1 - p_e)


def agreement(df: pd.DataFrame, binning: Binning = "band", tolerance: int = 0) -> dict:
    """Agreement between the judge (``score``) and people (``human_score``).

    Args:
        df: Labelled sample (output of :func:`sample_for_human_labels`, filled in).
        binning: ``band``, ``exact`` or ``label`` (see the module docstring).
        tolerance: Bins two scores may differ by and still agree (not for ``label``).

    Returns:
        ``{"agreement_pct", "cohens_kappa", "n"}``.
    """
    for col in (JUDGE_COLUMN, HUMAN_COLUMN):
        if col not in df.columns:
            raise ValueError(f"labels need a {col!r} column")
    if binning == "label" and tolerance:
        raise ValueError("tolerance applies to numeric binnings only")
    human = df[HUMAN_COLUMN].map(lambda v: None if isinstance(v, str) and not v.strip() else v)
    done = df[human.notna() & df[JUDGE_COLUMN].notna()]
    if done.empty:
        return {"agreement_pct": math.nan, "cohens_kappa": math.nan, "n": 0}
    j, h = _bins(done[JUDGE_COLUMN], binning), _bins(done[HUMAN_COLUMN], binning)
    same = (j == h) if binning == "label" else (j - h).abs() <= tolerance
    return {
        "agreement_pct": float(same.mean() * 100),
        "cohens_kappa": float(cohens_kappa(j.tolist(), h.tolist())),
        "n": int(len(done)),
    }


def _read(path: str) -> pd.DataFrame:
    p = Path(path)
    if p.is_dir():  # a versioned parquet dataset folder: take the latest version
        files = sorted(p.glob("*/*.parquet"))
        if not files:
            raise SystemExit(f"{p}: no parquet versions inside")
        p = files[-1]
    return pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``sample`` writes a labelling template, ``report`` prints agreement."""
    ap = argparse.ArgumentParser(prog="python -m r2_write.evaluation.agreement", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sample", help="write a CSV template of judged items to label")
    s.add_argument("--judged", required=True, help="judged items (parquet/CSV, or a versioned parquet folder)")
    s.add_argument("--responses", help="optional responses table joined on id (adds query and answer)")
    s.add_argument("--n", type=int, default=50)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True, help="CSV file to write")
    r = sub.add_parser("report", help="agreement of the filled-in labels")
    r.add_argument("--labels", required=True, help="the filled-in CSV")
    r.add_argument("--binning", choices=["band", "exact", "label"], default="band")
    r.add_argument("--tolerance", type=int, default=0)
    args = ap.parse_args(argv)
    if args.cmd == "sample":
        judged = _read(args.judged)
        if args.responses:
            resp = _read(args.responses)
            keep = [c for c in ("id", "query", "answer") if c in resp.columns]
            judged = judged.merge(resp[keep].drop_duplicates("id"), on="id", how="left")
        out = sample_for_human_labels(judged, args.n, args.seed)
        out.to_csv(args.out, index=False)
        print(f"wrote {len(out)} items to {args.out}; fill the {HUMAN_COLUMN} column")
        return 0
    res = agreement(pd.read_csv(args.labels), args.binning, args.tolerance)
    print(f"n={res['n']} agreement={res['agreement_pct']:.1f}% cohens_kappa={res['cohens_kappa']:.3f} "
          f"(binning={args.binning}, tolerance={args.tolerance})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
