"""DeepResearchGym report evaluation: write reports, label key points, rate quality, aggregate.

Protocol (``eval_kpr_async.py`` and ``eval_quality_async.py`` of
cxcscmu/deepresearch_benchmarking, see ../shared/benchmarks/deepresearchgym/SOURCE.md):

* Key points: one judge call per (key point, report); label Supported, Omitted or
  Contradicted. Per query: supported / contradicted / omitted share of its key points x 100;
  KPR, KPC and the omitted rate are the means over queries (KPC: lower is better).
* Quality: one judge call per criterion (Clarity, Depth, Balance, Breadth, Support,
  Insightfulness), an integer 0-10. A query's quality is sum of ratings / (10 x number of
  ratings) x 100 (= sum / 60 x 100 when all six are rated); the benchmark reports its mean
  over queries, and each criterion's mean on 0-10 and x10.

The judge is :class:`r2_write.judge.report.ReportJudge` (generate or probability mode, like
every judge of the project).

A key point or criterion the judge never answered validly is left unlabelled / unrated
(None), excluded from the rates and counted; it is never silently given a label. Reports
that could not be generated are not judged (the official scorer skips queries without an
answer file).
"""

from __future__ import annotations

import json
import math
import re

import pandas as pd

from r2_write.judge.report import ReportJudge
from r2_write.llm.client import LLMClient
from r2_write.llm.config import SamplingParams
from r2_write.prompts.report_judge import KEYPOINT_LABELS, QUALITY_CRITERIA
from r2_write.prompts.report_writer import report_messages
from r2_write.trajectory import split_thinking

REPORT_COLUMNS = ["id", "query", "key_points", "passages", "report", "answer", "response_tokens", "finish_reason", "error"]
LABEL_COLUMNS = ["id", "point_number", "point_content", "label", "justification", "attempts", "error", "truncated"]
QUALITY_COLUMNS = ["id", "criterion", "rating", "justification", "attempts", "error", "truncated"]

DEGENERATE_MIN_POINTS = 2
"""A judge that labels every one of at least this many key points Supported is flagged degenerate."""

_URL_RE = re.compile(r"https?://[^\s)\]>\"']+", re.I)


# --------------------------------------------------------------------------- frames


def has_source_urls(report: str) -> bool:
    """Whether ``report`` cites at least one http(s) URL (the Support criterion's minimum)."""
    return bool(_URL_RE.search(report or ""))


def generate_reports(
    client: LLMClient, queries: pd.DataFrame, passages: pd.DataFrame, sampling: SamplingParams, max_passage_chars: int = 1500
) -> pd.DataFrame:
    """Write one report per query with the variant's model, using the retrieved passages.

    Args:
        client: The variant's model client.
        queries: Columns id, query, key_points (JSON).
        passages: Columns id, passages (JSON list of {url, text}; ``[]`` closed book).
        sampling: Generation settings.
        max_passage_chars: Characters of each passage shown to the writer.

    Returns:
        Columns id, query, key_points, passages, report (raw), answer (after the
        end-of-thinking marker), response_tokens, finish_reason, error.
    """
    by_id = dict(zip(passages["id"], passages["passages"]))
    docs = [json.loads(by_id.get(i, "[]")) for i in queries["id"]]
    convs = [report_messages(q, d, max_passage_chars) for q, d in zip(queries["query"], docs)]
    gens = client.generate(convs, sampling)
    out = queries[["id", "query", "key_points"]].copy()
    out["passages"] = [json.dumps(d, ensure_ascii=False) for d in docs]
    out["report"] = [g.text for g in gens]
    out["answer"] = [split_thinking(g.text)[1] for g in gens]
    out["response_tokens"] = [int(g.completion_tokens) for g in gens]
    out["finish_reason"] = [g.finish_reason for g in gens]
    out["error"] = [g.error for g in gens]
    return out.reset_index(drop=True)[REPORT_COLUMNS]


def judge_key_points(judge: ReportJudge, reports: pd.DataFrame) -> pd.DataFrame:
    """Label every key point of every generated report (failed reports are not judged).

    Returns:
        One row per (query, key point): id, point_number, point_content, label (None if the
        judge never answered validly), justification, attempts, error, truncated (the
        report was cut at the judge's ``max_judged_chars``).
    """
    ok = reports[reports["error"].isna()]
    pairs = [(r, kp) for r in ok.itertuples() for kp in json.loads(r.key_points)]
    verdicts = judge.label_key_points([(kp["point_content"], r.answer) for r, kp in pairs])
    rows = [
        [r.id, int(kp["point_number"]), kp["point_content"], v.value, v.justification, v.attempts, v.error, v.truncated]
        for (r, kp), v in zip(pairs, verdicts)
    ]
    return pd.DataFrame(rows, columns=LABEL_COLUMNS)


def judge_quality(judge: ReportJudge, reports: pd.DataFrame, support_requires_urls: bool = True) -> pd.DataFrame:
    """Rate every generated report on the six quality criteria.

    Args:
        judge: The report judge.
        reports: Output of :func:`generate_reports`.
        support_requires_urls: Apply the Support rule ("no source URLs: 0") directly instead
            of asking the judge, for reports without any URL.

    Returns:
        One row per (query, criterion): id, criterion, rating (0-10, NaN if unrated),
        justification, attempts, error, truncated.
    """
    ok = reports[reports["error"].isna()]
    rows, asks = [], []
    for r in ok.itertuples():
        for c in QUALITY_CRITERIA:
            if c == "Support" and support_requires_urls and not has_source_urls(r.answer):
                rows.append([r.id, c, 0.0, "no source URLs in the report: 0 by the Support rule", 0, None, False])
            else:
                rows.append(None)
                asks.append((len(rows) - 1, r.id, c, r.query, r.answer))
    verdicts = judge.rate_quality([(c, q, a) for _, _, c, q, a in asks])
    for (pos, rid, c, _, _), v in zip(asks, verdicts):
        rating = math.nan if v.value is None else float(v.value)
        rows[pos] = [rid, c, rating, v.justification, v.attempts, v.error, v.truncated]
    return pd.DataFrame(rows, columns=QUALITY_COLUMNS)


def aggregate_drg(labels: pd.DataFrame, quality: pd.DataFrame) -> dict:
    """Aggregate key-point labels and quality ratings as the official DeepResearchGym scorer.

    Args:
        labels: Columns id, point_number, label (Supported / Omitted / Contradicted; None or
            NaN when unlabelled).
        quality: Columns id, criterion, rating (0-10; None/NaN when unrated).

    Returns:
        ``kpr``, ``kpc``, ``omitted_rate``: means over queries of the per-query shares x 100
        (over labelled key points); ``quality_overall``: mean over queries of
        sum / (10 x rated criteria) x 100; ``quality`` (criterion -> mean 0-10) and
        ``quality_100`` (x10); counts ``n_queries`` (with at least one labelled key point),
        ``n_key_points``, ``n_unlabelled`` (key points), ``n_queries_unlabelled`` (queries
        whose key points were all left unlabelled: excluded from KPR/KPC, never 0 or 100),
        ``n_quality_queries``, ``n_unrated``, ``n_truncated`` (reports cut at the judge's
        ``max_judged_chars``, when the frames carry a ``truncated`` column);
        ``all_supported``: the judge labelled every key point Supported (at least
        :data:`DEGENERATE_MIN_POINTS` of them), the mark of a degenerate judge. Means over
        nothing are NaN.

    >>> lab = pd.DataFrame({"id": ["q", "q"], "point_number": [1, 2], "label": ["Supported", "Omitted"]})
    >>> qual = pd.DataFrame({"id": ["q"] * 2, "criterion": ["Clarity", "Depth"], "rating": [6, 4]})
    >>> r = aggregate_drg(lab, qual)
    >>> r["kpr"], r["quality_overall"]
    (50.0, 50.0)
    """
    for name, df, cols in (("labels", labels, {"id", "label"}), ("quality", quality, {"id", "criterion", "rating"})):
        if cols - set(df.columns):
            raise ValueError(f"{name} frame lacks column(s) {sorted(cols - set(df.columns))}")
    unknown = set(labels["label"].dropna()) - set(KEYPOINT_LABELS)
    if unknown:
        raise ValueError(f"unknown key-point label(s) {sorted(unknown)}; expected {KEYPOINT_LABELS}")
    lab = labels[labels["label"].notna()]
    shares = pd.DataFrame(
        {name: lab["label"].eq(value) for name, value in (("kpr", "Supported"), ("kpc", "Contradicted"), ("omitted_rate", "Omitted"))}
    ).groupby(lab["id"]).mean() * 100
    rating = pd.to_numeric(quality["rating"], errors="coerce")
    rated = quality.assign(rating=rating)[rating.notna()]
    per_query = rated.groupby("id")["rating"].agg(lambda s: s.sum() / (10 * len(s)) * 100)
    crit_mean = rated.groupby("criterion")["rating"].mean()
    order = [c for c in QUALITY_CRITERIA if c in crit_mean.index] + sorted(set(crit_mean.index) - set(QUALITY_CRITERIA))
    crit = {c: float(crit_mean[c]) for c in order}
    mean = lambda s: float(s.mean()) if len(s) else math.nan  # noqa: E731
    cut = set()
    for df in (labels, quality):
        if "truncated" in df.columns:
            cut |= set(df.loc[df["truncated"].fillna(False).astype(bool), "id"])
    return {
        "kpr": mean(shares["kpr"]),
        "kpc": mean(shares["kpc"]),
        "omitted_rate": mean(shares["omitted_rate"]),
        "quality_overall": mean(per_query),
        "quality": crit,
        "quality_100": {c: v * 10 for c, v in crit.items()},
        "n_queries": int(len(shares)),
        "n_key_points": int(len(lab)),
        "n_unlabelled": int(labels["label"].isna().sum()),
        "n_queries_unlabelled": int(labels["id"].nunique() - len(shares)),
        "n_quality_queries": int(len(per_query)),
        "n_unrated": int(rating.isna().sum()),
        "n_truncated": len(cut),
        "all_supported": bool(len(lab) >= DEGENERATE_MIN_POINTS and lab["label"].eq("Supported").all()),
    }
