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

from r2_write.judge.judge import RubricJudge
from r2_write.llm.base import Conversation
from r2_write.llm.client import LLMClient
from r2_write.llm.config import SamplingParams
from r2_write.rubrics.schema import DOMAINS, Criterion
from r2_write.trajectory import split_thinking

RESPONSE_COLUMNS = [
    "id", "domain", "subdomain", "query", "criteria", "response", "answer",
    "response_tokens", "finish_reason", "error",
]
SCORE_COLUMNS = ["id", "domain", "criterion", "score", "reason", "attempts", "error", "truncated"]


def response_messages(query: str) -> Conversation:
    """The generation request, as WritingBench's ``generate_response.py``: the query alone.

    >>> response_messages("Write a haiku.")
    [{'role': 'user', 'content': 'Write a haiku.'}]
    """
    return [{"role": "user", "content": query}]


def generate_responses(client: LLMClient, queries: pd.DataFrame, sampling: SamplingParams) -> pd.DataFrame:
    """Generate one response per WritingBench query with ``client``.

    Args:
        client: The variant's model client.
        queries: Columns id, domain, subdomain, query, criteria (JSON).
        sampling: Generation settings.

    Returns:
        ``queries`` plus response (raw, with thinking), answer (after the end-of-thinking
        marker), response_tokens, finish_reason and error (None when the call succeeded).
    """
    gens = client.generate([response_messages(q) for q in queries["query"]], sampling)
    out = queries[["id", "domain", "subdomain", "query", "criteria"]].copy()
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
        One row per (query, criterion): id, domain, criterion, score (NaN if unscored),
        reason, attempts, error, truncated (the answer was cut at the judge's
        ``max_judged_chars``).
    """
    ok = responses[responses["error"].isna()]
    rubrics = [[Criterion.model_validate(c) for c in json.loads(crit)] for crit in ok["criteria"]]
    results = dict(zip(ok.index, judge.score_responses(list(ok["query"]), list(ok["answer"]), rubrics)))
    rows = []
    for idx, r in zip(responses.index, responses.itertuples()):
        names = [c["name"] for c in json.loads(r.criteria)]
        if idx not in results:
            rows += [[r.id, r.domain, n, math.nan, "", 0, f"generation failed: {r.error}", False] for n in names]
            continue
        for n, res in zip(names, results[idx]):
            score = math.nan if res.score is None else float(res.score)
            rows.append([r.id, r.domain, n, score, res.reason, res.attempts, res.error, res.truncated])
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def aggregate_writingbench(scores: pd.DataFrame) -> dict:
    """Aggregate criterion scores exactly as WritingBench's ``calculate_scores.py``.

    Args:
        scores: One row per (query, criterion) with columns id, domain, criterion, score
            (1-10; None/NaN when unscored).

    Returns:
        ``overall`` (mean of all scored criteria, 1-10) and ``overall_100`` (x10);
        ``domains`` / ``domains_100``: per domain the mean of its queries' means (domains in
        WritingBench order, then any other); ``per_query``: id -> mean; counts
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
        "per_query": {str(k): float(v) for k, v in per_query.items()},
        "n_queries": int(len(per_query)),
        "n_scored": int(len(scored)),
        "n_unscored": int(s.isna().sum()),
        "n_queries_unscored": int(scores["id"].nunique() - len(per_query)),
        "n_truncated": int(scores.loc[scores["truncated"].fillna(False).astype(bool), "id"].nunique())
        if "truncated" in scores.columns
        else 0,
    }
