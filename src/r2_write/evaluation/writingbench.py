"""WritingBench evaluation: generate responses, judge them per criterion, aggregate like the benchmark.

Protocol (public scripts of X-PLUG/WritingBench: ``generate_response.py``,
``evaluate_benchmark.py``, ``calculate_scores.py``):

* the model answers the bare query (one user message, no system prompt);
* a reasoning model's response is cut after the end-of-thinking marker before judging
  (:func:`r2_write.trajectory.split_thinking`);
* the judge scores each of the query's 5 criteria 1-10 (JSON, retried when malformed);
* a query's score is the mean of its criteria; **overall is the mean of all criterion scores**
  (not of the per-query means); a domain's score is the mean of the per-query means of its
  queries; leaderboards show everything x10 (100 scale).

Unscored criteria (the judge never produced a valid score, or the response could not be
generated) are excluded from every mean and counted, never scored as 0.
"""

from __future__ import annotations

import json
import math

import pandas as pd

from r2_write.judge.judge import RubricJudge, mean_score
from r2_write.llm.client import LLMClient
from r2_write.llm.config import SamplingParams
from r2_write.prompts.policy import policy_messages
from r2_write.rubrics.schema import DOMAINS, Criterion
from r2_write.trajectory import parse, split_thinking

RESPONSE_COLUMNS = [
    "id", "domain", "subdomain", "subsets", "query", "criteria", "response", "answer",
    "response_tokens", "finish_reason", "error",
]
STEP_COLUMNS = ["id", "domain", "step", "score_before", "score_after", "delta", "effect"]
"""One row per reflection->revision step, as ``synthesis.steps``."""
SCORE_COLUMNS = ["id", "domain", "subdomain", "subsets", "criterion", "score", "reason", "attempts", "error", "truncated"]
QUERY_COLUMNS = ["id", "domain", "subdomain", "subsets", "query", "criteria"]


def generate_responses(client: LLMClient, queries: pd.DataFrame, sampling: SamplingParams) -> pd.DataFrame:
    """Generate one response per WritingBench query with ``client``.

    Args:
        client: The variant's model client.
        queries: Columns id, domain, subdomain, query, criteria (JSON) and optionally subsets
            (the files holding the query, comma-separated; "" when absent).
        sampling: Generation settings.

    Returns:
        ``queries`` plus response (raw, with thinking), answer (after the end-of-thinking
        marker), response_tokens, finish_reason and error (None when the call succeeded).
    """
    gens = client.generate([policy_messages(q) for q in queries["query"]], sampling)
    out = queries.reindex(columns=QUERY_COLUMNS)
    out["subdomain"] = out["subdomain"].fillna("")
    out["subsets"] = out["subsets"].fillna("")
    out["response"] = [g.text for g in gens]
    out["answer"] = [split_thinking(g.text)[1] for g in gens]
    out["response_tokens"] = [int(g.completion_tokens) for g in gens]
    out["finish_reason"] = [g.finish_reason for g in gens]
    out["error"] = [g.error for g in gens]
    return out.reset_index(drop=True)[RESPONSE_COLUMNS]


def judge_responses(judge: RubricJudge, responses: pd.DataFrame) -> pd.DataFrame:
    """Score every generated answer on each of its criteria.

    Responses whose generation failed are not judged: their criteria are unscored
    (score NaN, error "generation failed: ...").

    Args:
        judge: The rubric judge.
        responses: Output of :func:`generate_responses`.

    Returns:
        One row per (query, criterion): id, domain, subdomain, subsets, criterion, score
        (NaN if unscored), reason, attempts, error, truncated (the answer was cut at the
        judge's ``max_judged_chars``).
    """
    ok = responses[responses["error"].isna()]
    rubrics = [[Criterion.model_validate(c) for c in json.loads(crit)] for crit in ok["criteria"]]
    results = dict(zip(ok.index, judge.score_responses(list(ok["query"]), list(ok["answer"]), rubrics)))
    rows = []
    for idx, r in zip(responses.index, responses.itertuples()):
        names = [c["name"] for c in json.loads(r.criteria)]
        where = [r.id, r.domain, _text(getattr(r, "subdomain", "")), _text(getattr(r, "subsets", ""))]
        if idx not in results:
            rows += [[*where, n, math.nan, "", 0, f"generation failed: {r.error}", False] for n in names]
            continue
        for n, res in zip(names, results[idx]):
            score = math.nan if res.score is None else float(res.score)
            rows.append([*where, n, score, res.reason, res.attempts, res.error, res.truncated])
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def step_effect(delta: float, tol: float = 1e-6) -> str:
    """raised | lowered | unchanged (within ``tol``) | unscored (no delta), as the synthesis steps.

    >>> [step_effect(d) for d in (0.4, -0.2, 0.0, float("nan"))]
    ['raised', 'lowered', 'unchanged', 'unscored']
    """
    if delta is None or pd.isna(delta):
        return "unscored"
    return "raised" if delta > tol else "lowered" if delta < -tol else "unchanged"


def judge_reflection_steps(judge: RubricJudge, responses: pd.DataFrame) -> pd.DataFrame:
    """The effect of each reflection->revision step in the variant's own responses.

    Every response is parsed as a trajectory (:func:`r2_write.trajectory.parse`, lenient);
    its versions (the draft, then each revision: ``Trajectory.versions()``) are judged on the
    query's criteria like an answer, and each step compares the version after it with the
    version before it (mean over the criteria). Each distinct version is judged once, and the
    judge client's response cache serves any version judged before (a final revision equal
    to the answer costs nothing). Responses without a revision, or whose generation failed,
    have no steps.

    Args:
        judge: The WritingBench judge.
        responses: Output of :func:`generate_responses`.

    Returns:
        Columns id, domain, step (1 = first revision), score_before, score_after (1-10 means;
        NaN when unscored), delta, effect (:func:`step_effect`).
    """
    ok = responses[responses["error"].isna()]
    items: dict[tuple[str, str], tuple[str, list[Criterion]]] = {}
    plan = []  # (id, domain, [version texts])
    for r in ok.itertuples():
        versions = [v.strip() for v in parse(r.response or "", strict=False).versions()]
        if len(versions) < 2:
            continue
        rubric = [Criterion.model_validate(c) for c in json.loads(r.criteria)]
        for v in versions:
            items.setdefault((r.id, v), (r.query, rubric))
        plan.append((r.id, r.domain, versions))
    keys = list(items)
    verdicts = judge.score_responses([items[k][0] for k in keys], [k[1] for k in keys], [items[k][1] for k in keys])
    score = {k: mean_score(v) for k, v in zip(keys, verdicts)}
    rows = []
    for rid, domain, versions in plan:
        for k in range(1, len(versions)):
            before, after = score[(rid, versions[k - 1])], score[(rid, versions[k])]
            rows.append([rid, domain, k, math.nan if before is None else before, math.nan if after is None else after])
    steps = pd.DataFrame(rows, columns=STEP_COLUMNS[:5])
    steps["delta"] = steps["score_after"] - steps["score_before"]
    steps["effect"] = [step_effect(d) for d in steps["delta"]]
    return steps[STEP_COLUMNS]


def _text(v) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def _per_query(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per query with at least one score: id, mean (1-10), domain, subdomain, subsets."""
    s = pd.to_numeric(scores["score"], errors="coerce")
    means = scores.assign(score=s)[s.notna()].groupby("id", sort=False)["score"].mean()
    meta = scores.drop_duplicates("id").set_index("id").reindex(means.index)
    out = pd.DataFrame({"id": means.index, "mean": means.to_numpy(), "domain": meta["domain"].to_numpy()})
    for col in ("subdomain", "subsets"):
        out[col] = [_text(v) for v in meta[col]] if col in meta.columns else ""
    return out


def _domain_order(domains) -> list[str]:
    present = set(domains)
    return [d for d in DOMAINS if d in present] + sorted(d for d in present if d not in DOMAINS)


def subset_scores(scores: pd.DataFrame) -> dict[str, float]:
    """Per requirement subset (file): the mean of the per-query means of its queries (1-10).

    As ``calculate_scores.py`` computes ``<requirement>_R``; a query held by several files
    counts in each. Subsets in order of first appearance; none without a ``subsets`` column.

    >>> df = pd.DataFrame({"id": ["a", "a", "b"], "domain": ["Education"] * 3, "criterion": ["c1", "c2", "c1"],
    ...                    "score": [8, 6, 10], "subsets": ["format,length", "format,length", "length"]})
    >>> subset_scores(df)
    {'format': 7.0, 'length': 8.5}
    """
    pq = _per_query(scores)
    if "subsets" not in scores.columns or not len(pq):
        return {}
    tags = pq["subsets"].str.split(",")
    names = [n for n in dict.fromkeys(n for t in tags for n in t) if n]
    return {n: float(pq.loc[tags.map(lambda t, n=n: n in t), "mean"].mean()) for n in names}


def breakdown_table(scores: pd.DataFrame) -> pd.DataFrame:
    """WritingBench breakdown by domain, requirement subset and subdomain (``domain2``).

    Each group's score is the mean of its queries' means, as the official
    ``calculate_scores.py`` (``Domain1_*``, ``<requirement>_R``, ``Domain2_*``).

    Returns:
        Columns level (domain | subset | subdomain), group, domain (a subdomain's domain,
        else ""), n_queries, score (1-10), score_100 (x10); domains in WritingBench order,
        subsets in file order, subdomains by domain then name.
    """
    pq = _per_query(scores)
    rows = []
    for d in _domain_order(pq["domain"]):
        g = pq[pq["domain"] == d]
        rows.append(("domain", d, "", len(g), float(g["mean"].mean())))
    if "subsets" in scores.columns and len(pq):
        tags = pq["subsets"].str.split(",")
        for n in [n for n in dict.fromkeys(n for t in tags for n in t) if n]:
            g = pq[tags.map(lambda t, n=n: n in t)]
            rows.append(("subset", n, "", len(g), float(g["mean"].mean())))
    for d in _domain_order(pq["domain"]):
        sub = pq[(pq["domain"] == d) & (pq["subdomain"] != "")]
        for name, g in sorted(sub.groupby("subdomain"), key=lambda kv: kv[0]):
            rows.append(("subdomain", name, d, len(g), float(g["mean"].mean())))
    out = pd.DataFrame(rows, columns=["level", "group", "domain", "n_queries", "score"])
    out["score_100"] = out["score"] * 10
    return out


def aggregate_writingbench(scores: pd.DataFrame) -> dict:
    """Aggregate criterion scores exactly as WritingBench's ``calculate_scores.py``.

    Args:
        scores: One row per (query, criterion) with columns id, domain, criterion, score
            (1-10; None/NaN when unscored).

    Returns:
        ``overall`` (mean of all scored criteria, 1-10) and ``overall_100`` (x10);
        ``domains`` / ``domains_100``: per domain the mean of its queries' means (domains in
        WritingBench order, then any other); ``subsets`` / ``subsets_100``: the same per
        requirement subset (:func:`subset_scores`, when ``scores`` has a ``subsets``
        column); ``per_query``: id -> mean; counts
        ``n_queries`` (with at least one score), ``n_scored``, ``n_unscored`` (criteria) and
        ``n_queries_unscored`` (queries with no score at all) and ``n_truncated`` (answers
        cut at the judge's ``max_judged_chars``, when ``scores`` has a ``truncated``
        column). Means over nothing are NaN.

    >>> df = pd.DataFrame({"id": ["a", "a", "b"], "domain": ["Education"] * 3,
    ...                    "criterion": ["c1", "c2", "c1"], "score": [8, 6, 10]})
    >>> r = aggregate_writingbench(df)
    >>> round(r["overall"], 4), r["domains"]["Education"]
    (8.0, 8.5)
    """
    missing = {"id", "domain", "criterion", "score"} - set(scores.columns)
    if missing:
        raise ValueError(f"scores frame lacks column(s) {sorted(missing)}")
    s = pd.to_numeric(scores["score"], errors="coerce")
    scored = scores.assign(score=s)[s.notna()]
    per_query = scored.groupby("id", sort=False)["score"].mean()
    query_domain = scores.drop_duplicates("id").set_index("id")["domain"]
    by_domain = per_query.groupby(query_domain.reindex(per_query.index)).mean() if len(per_query) else pd.Series(dtype=float)
    order = [d for d in DOMAINS if d in by_domain.index] + sorted(d for d in by_domain.index if d not in DOMAINS)
    domains = {d: float(by_domain[d]) for d in order}
    overall = float(scored["score"].mean()) if len(scored) else math.nan
    return {
        "overall": overall,
        "overall_100": overall * 10,
        "domains": domains,
        "domains_100": {d: v * 10 for d, v in domains.items()},
        "subsets": (subsets := subset_scores(scores)),
        "subsets_100": {k: v * 10 for k, v in subsets.items()},
        "per_query": {str(k): float(v) for k, v in per_query.items()},
        "n_queries": int(len(per_query)),
        "n_scored": int(len(scored)),
        "n_unscored": int(s.isna().sum()),
        "n_queries_unscored": int(scores["id"].nunique() - len(per_query)),
        "n_truncated": int(scores.loc[scores["truncated"].fillna(False).astype(bool), "id"].nunique())
        if "truncated" in scores.columns
        else 0,
    }
