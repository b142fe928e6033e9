"""Evaluation nodes: WritingBench and DeepResearchGym per model variant, then one comparison."""

from __future__ import annotations

import json
import logging

import pandas as pd
from matplotlib.figure import Figure
from pydantic import BaseModel, ConfigDict, Field, field_validator

from r2_write.config import ConfigError, parse_params
from r2_write.evaluation import compare, deepresearchgym as drg, dynamics, writingbench as wb
from r2_write.evaluation.retrieval import RetrieverConfig, build_retriever
from r2_write.judge.judge import JudgeConfig, JudgeOverrides, RubricJudge
from r2_write.judge.report import ReportJudge
from r2_write.llm.budget import check_calls, check_judge
from r2_write.llm.client import LLMClient
from r2_write.llm.config import SamplingParams
from r2_write.prompts.judge import PromptTemplate, load_prompt_template
from r2_write.roles import client_for, policy_client
from r2_write.tracking import mlflow_metrics

logger = logging.getLogger(__name__)


class WritingBenchParams(BaseModel):
    """``params:evaluation.writingbench``."""

    model_config = ConfigDict(extra="forbid")

    num_queries: int | None | dict[str, int | None] = Field(
        None,
        description="Queries taken from each WritingBench file (subset) of writingbench_queries: one number or None "
        "(all) for every file, or {subset: N or None}; a subset not named contributes none of its own (its queries "
        "taken through another file still count in its breakdown).",
    )
    max_query_chars: int | None = Field(
        None, ge=1, description="Skip queries longer than this before taking the first N (CPU runs; None: keep all)."
    )

    @field_validator("num_queries")
    @classmethod
    def _non_negative(cls, v):
        for n in (v.values() if isinstance(v, dict) else [v]):
            if n is not None and n < 0:
                raise ValueError(f"query counts must be >= 0 or null, got {n}")
        return v
    judge_role: str = Field(
        "eval_judge", description="Role under params:llm whose model judges (eval_judge falls back to llm.judge)."
    )
    judge: JudgeOverrides = Field(
        default_factory=JudgeOverrides, description="Overrides of params:judge for this benchmark (JudgeConfig fields)."
    )
    judge_prompt_path: str | None = Field(
        None,
        description="A judge prompt template file of your own (e.g. the official WritingBench critic's, which the "
        "critic model was trained on), loaded at run time: .yaml/.json with 'user' (and 'system'), or a text file "
        "with the user template; placeholders {query}, {response}, {criteria}. None: the built-in prompt.",
    )
    judge_system_prompt: str | None = Field(
        None, description="System message for a plain-text judge_prompt_path template (None: no system message)."
    )
    reflection_steps: bool = Field(
        True,
        description="Judge the version before and after every reflection->revision step in the variant's own "
        "responses (reflection effects per variant; cached verdicts are reused).",
    )


class DeepResearchGymParams(BaseModel):
    """``params:evaluation.deepresearchgym``."""

    model_config = ConfigDict(extra="forbid")

    num_queries: int | None = Field(None, ge=0, description="First N queries (None: all).")
    max_key_points: int | None = Field(None, ge=1, description="Keep the first N key points per query (None: all).")
    max_new_tokens: int | None = Field(None, ge=1, description="Report length limit (None: generation's).")
    max_passage_chars: int = Field(1500, ge=100, description="Characters of each passage shown to the writer.")
    support_requires_urls: bool = Field(True, description="Rate Support 0 without asking when a report has no URL.")
    retriever: RetrieverConfig = Field(default_factory=RetrieverConfig)
    judge_role: str = Field(
        "eval_judge", description="Role under params:llm whose model judges (eval_judge falls back to llm.judge)."
    )
    judge: JudgeOverrides = Field(
        default_factory=JudgeOverrides, description="Overrides of params:judge for this benchmark (JudgeConfig fields)."
    )


class EvaluationParams(BaseModel):
    """``params:evaluation``."""

    model_config = ConfigDict(extra="forbid")

    generation: SamplingParams = Field(default_factory=SamplingParams, description="How each variant writes.")
    writingbench: WritingBenchParams = Field(default_factory=WritingBenchParams)
    deepresearchgym: DeepResearchGymParams = Field(default_factory=DeepResearchGymParams)


def _params(params: dict) -> EvaluationParams:
    return parse_params(EvaluationParams, params, "evaluation")


def _policy_client(llm: dict, model_dir: str) -> LLMClient:
    """The variant's own client (its model is freed once the node is done)."""
    return policy_client(llm, model_dir, share_backend=False)


def _judge_parts(llm: dict, judge: dict, role: str, overrides: JudgeOverrides, where: str):
    return client_for(llm, role), parse_params(JudgeConfig, overrides.over(judge), where)


def _judge_template(p: WritingBenchParams) -> PromptTemplate | None:
    """The user's WritingBench judge prompt template, or None for the built-in prompt."""
    if not p.judge_prompt_path:
        return None
    try:
        return load_prompt_template(p.judge_prompt_path, p.judge_system_prompt)
    except ValueError as exc:
        raise ConfigError(f"parameter 'evaluation.writingbench.judge_prompt_path': {exc}") from None


def _drg_judge(llm: dict, judge: dict, p: DeepResearchGymParams) -> ReportJudge:
    """The DeepResearchGym judge: its role and settings (``params:judge`` with the benchmark's overrides)."""
    return ReportJudge(*_judge_parts(llm, judge, p.judge_role, p.judge, "evaluation.deepresearchgym.judge"))


def _writingbench_judge(llm: dict, judge: dict, p: WritingBenchParams) -> RubricJudge:
    """The WritingBench judge: role, settings and (optionally) the user's prompt template."""
    client, cfg = _judge_parts(llm, judge, p.judge_role, p.judge, "evaluation.writingbench.judge")
    template = _judge_template(p)
    logger.info("WritingBench judge: %s (role %s), prompt %s", client.cfg.model, p.judge_role,
                template.source if template else "built-in")
    return RubricJudge(client, cfg, template)


def select_writingbench_queries(queries: pd.DataFrame, params: dict) -> pd.DataFrame:
    """Take the configured first queries of each WritingBench file (subset).

    With ``max_query_chars`` set, longer queries are skipped first (a CPU run cannot afford
    the long-context ones); the paper configuration keeps every query. The first N of a
    subset are taken across domains in turn (file order within a domain), so a small N still
    covers several. A query held by several subsets is taken once.

    Args:
        queries: ``writingbench_queries`` (id, domain, subdomain, query, criteria, subsets:
            the comma-separated names of the files holding the query; without that column
            every query belongs to one subset, ``writingbench``).
        params: ``params:evaluation``.

    Returns:
        The evaluation queries (same columns), subset by subset in file order.
    """
    p = _params(params).writingbench
    _judge_template(p)  # a missing or malformed judge prompt stops the run here, before any generation
    if "subsets" not in queries.columns:
        queries = queries.assign(subsets="writingbench")
    if p.max_query_chars is not None:
        queries = queries[queries["query"].str.len() <= p.max_query_chars]
    tags = queries["subsets"].str.split(",")
    names = list(dict.fromkeys(n for t in tags for n in t))
    unknown = sorted(set(p.num_queries) - set(names)) if isinstance(p.num_queries, dict) else []
    if unknown:
        logger.warning("evaluation.writingbench.num_queries names subset(s) %s, not among the files %s", unknown, names)
    parts = []
    for name in names:
        n = p.num_queries.get(name, 0) if isinstance(p.num_queries, dict) else p.num_queries
        subset = queries[tags.map(lambda t, name=name: name in t)]
        parts.append(subset if n is None else _spread_over_domains(subset).head(n))
    if not parts:
        return queries.reset_index(drop=True)
    return pd.concat(parts, ignore_index=True).drop_duplicates("id").reset_index(drop=True)


def _spread_over_domains(df: pd.DataFrame) -> pd.DataFrame:
    """Interleave the domains (1st of each domain, then 2nd of each...), keeping file order within each."""
    rank = df.groupby("domain", sort=False).cumcount()
    return df.assign(_rank=rank).sort_values("_rank", kind="stable").drop(columns="_rank")


def select_drg_queries(queries: pd.DataFrame, params: dict) -> pd.DataFrame:
    """Take the configured first DeepResearchGym queries and key points per query.

    Args:
        queries: ``deepresearchgym_queries`` (id, query, key_points as JSON).
        params: ``params:evaluation``.

    Returns:
        The same columns, truncated.
    """
    p = _params(params).deepresearchgym
    out = (queries if p.num_queries is None else queries.head(p.num_queries)).copy()
    if p.max_key_points is not None:
        out["key_points"] = [json.dumps(json.loads(k)[: p.max_key_points], ensure_ascii=False) for k in out["key_points"]]
    return out.reset_index(drop=True)


def retrieve_drg_passages(queries: pd.DataFrame, params: dict) -> pd.DataFrame:
    """Retrieve passages for every query with the configured retriever (once for all variants).

    Args:
        queries: Output of :func:`select_drg_queries`.
        params: ``params:evaluation``.

    Returns:
        Columns id, passages (JSON list of {url, text}; ``[]`` closed book), n_passages.
    """
    cfg = _params(params).deepresearchgym.retriever
    retriever = build_retriever(cfg)
    found = [retriever.retrieve(q, cfg.k) for q in queries["query"]]
    logger.info("retrieval (%s): %d queries, %d passages", cfg.kind, len(found), sum(map(len, found)))
    return pd.DataFrame(
        {"id": queries["id"], "passages": [json.dumps(f, ensure_ascii=False) for f in found], "n_passages": [len(f) for f in found]}
    )


def generate_writingbench_responses(model: str, queries: pd.DataFrame, params: dict, llm: dict) -> pd.DataFrame:
    """Generate the variant's responses to the WritingBench queries.

    Args:
        model: The variant's model directory (a ModelDirectoryDataset load).
        queries: Output of :func:`select_writingbench_queries`.
        params: ``params:evaluation``.
        llm: ``params:llm`` (``policy`` gives backend and batch settings).

    Returns:
        See :func:`r2_write.evaluation.writingbench.generate_responses`.
    """
    client = _policy_client(llm, model)
    out = wb.generate_responses(client, queries, _params(params).generation)
    check_calls(client, what="responses failed")  # above llm.policy.max_failed_share: the node fails
    return out


def judge_writingbench_responses(responses: pd.DataFrame, params: dict, llm: dict, judge: dict) -> pd.DataFrame:
    """Score each response on its 5 criteria (thinking cut off first).

    Args:
        responses: Output of :func:`generate_writingbench_responses`.
        params: ``params:evaluation``.
        llm: ``params:llm``.
        judge: ``params:judge`` (overridden by ``evaluation.writingbench.judge``).

    Returns:
        One row per (query, criterion): id, domain, criterion, score, reason, attempts, error.
    """
    judge_ = _writingbench_judge(llm, judge, _params(params).writingbench)
    out = wb.judge_responses(judge_, responses)
    check_judge(judge_, "judged criteria unscored")
    return out


def judge_reflection_steps(responses: pd.DataFrame, params: dict, llm: dict, judge: dict) -> pd.DataFrame:
    """Judge the versions around every reflection->revision step of the variant's responses.

    Same judge, settings and prompt as :func:`judge_writingbench_responses`, so the answer
    and any version judged before come from the response cache.

    Args:
        responses: Output of :func:`generate_writingbench_responses`.
        params: ``params:evaluation`` (``writingbench.reflection_steps: false`` skips it).
        llm: ``params:llm``.
        judge: ``params:judge``.

    Returns:
        id, domain, step, score_before, score_after, delta, effect (see
        :func:`r2_write.evaluation.writingbench.judge_reflection_steps`).
    """
    p = _params(params).writingbench
    if not p.reflection_steps:
        return pd.DataFrame(columns=wb.STEP_COLUMNS)
    judge_ = _writingbench_judge(llm, judge, p)
    steps = wb.judge_reflection_steps(judge_, responses)
    check_judge(judge_, "judged criteria unscored")
    logger.info("reflection steps in %d responses: %d (%s)", len(responses), len(steps), steps["effect"].value_counts().to_dict())
    return steps


def generate_drg_reports(model: str, queries: pd.DataFrame, passages: pd.DataFrame, params: dict, llm: dict) -> pd.DataFrame:
    """Write the variant's research report for every DeepResearchGym query.

    Args:
        model: The variant's model directory.
        queries: Output of :func:`select_drg_queries`.
        passages: Output of :func:`retrieve_drg_passages`.
        params: ``params:evaluation``.
        llm: ``params:llm``.

    Returns:
        See :func:`r2_write.evaluation.deepresearchgym.generate_reports`.
    """
    p = _params(params)
    sampling = p.generation
    if p.deepresearchgym.max_new_tokens:
        sampling = sampling.model_copy(update={"max_new_tokens": p.deepresearchgym.max_new_tokens})
    client = _policy_client(llm, model)
    out = drg.generate_reports(client, queries, passages, sampling, p.deepresearchgym.max_passage_chars)
    check_calls(client, what="reports failed")
    return out


def judge_drg_key_points(reports: pd.DataFrame, params: dict, llm: dict, judge: dict) -> pd.DataFrame:
    """Label every key point of every report Supported / Omitted / Contradicted.

    Args:
        reports: Output of :func:`generate_drg_reports`.
        params: ``params:evaluation``.
        llm: ``params:llm``.
        judge: ``params:judge`` (overridden by ``evaluation.deepresearchgym.judge``).

    Returns:
        id, point_number, point_content, label, justification, attempts, error.
    """
    judge_ = _drg_judge(llm, judge, _params(params).deepresearchgym)
    out = drg.judge_key_points(judge_, reports)
    check_judge(judge_, "key points unlabelled")
    return out


def judge_drg_quality(reports: pd.DataFrame, params: dict, llm: dict, judge: dict) -> pd.DataFrame:
    """Rate every report 0-10 on Clarity, Depth, Balance, Breadth, Support, Insightfulness.

    Takes the arguments of :func:`judge_drg_key_points`; returns one row per (query,
    criterion): id, criterion, rating, justification, attempts, error.
    """
    p = _params(params).deepresearchgym
    judge_ = _drg_judge(llm, judge, p)
    out = drg.judge_quality(judge_, reports, p.support_requires_urls)
    check_judge(judge_, "ratings failed")
    return out


def summarize_variant(
    responses: pd.DataFrame,
    scores: pd.DataFrame,
    labels: pd.DataFrame,
    quality: pd.DataFrame,
    steps: pd.DataFrame | None = None,
    *,
    variant: str,
) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """Aggregate both benchmarks for one variant and log them to a nested MLflow run.

    Args:
        responses: The variant's WritingBench responses.
        scores: The variant's WritingBench criterion scores.
        labels: The variant's key-point labels.
        quality: The variant's quality ratings.
        steps: The reflection->revision steps of its WritingBench responses (None: not judged).
        variant: The variant's name (bound when the pipeline is built).

    Returns:
        (summary, metrics, breakdown): a one-row table (variant + shared metric names),
        kedro-mlflow metrics ``eval/<variant>/<name>`` for the parent run, and the WritingBench
        breakdown by domain, requirement subset and subdomain
        (:func:`r2_write.evaluation.writingbench.breakdown_table` + ``variant``).
    """
    metrics = compare.variant_metrics(wb.aggregate_writingbench(scores), drg.aggregate_drg(labels, quality), responses, steps)
    compare.log_variant_run(variant, metrics)
    logger.info("evaluation %s: %s", variant, {k: round(v, 2) for k, v in metrics.items()})
    breakdown = wb.breakdown_table(scores).assign(variant=variant)
    return pd.DataFrame([{"variant": variant, **metrics}]), mlflow_metrics(compare.prefixed(metrics, variant)), breakdown


def fingerprint_models(*models: str, variants: dict[str, str]) -> pd.DataFrame:
    """Each variant's model by content (variant, model, model_sha256), so identical weights are caught.

    Args:
        *models: The loaded model datasets (directories or hosted model names), one per distinct
            dataset of ``variants``, in their first-seen order.
        variants: Variant name -> its model dataset (bound when the pipeline is built).

    Returns:
        :func:`r2_write.evaluation.compare.model_fingerprints`.
    """
    datasets = list(dict.fromkeys(variants.values()))
    if len(models) != len(datasets):
        raise ValueError(f"{len(models)} models for {len(datasets)} model datasets")
    loaded = dict(zip(datasets, models))
    return compare.model_fingerprints({v: loaded[d] for v, d in variants.items()})


def compare_variants(*tables: pd.DataFrame) -> tuple[pd.DataFrame, str, Figure, pd.DataFrame]:
    """Build the variants x metrics comparison table, its markdown, a bar chart and the breakdown.

    Args:
        *tables: Each variant's one-row summary and its WritingBench breakdown (told apart
            by the breakdown's ``level`` column), variants in the order of their summaries;
            optionally the model fingerprints (``model_sha256`` column) and training histories
            (``reward/mean`` column, one ``variant``), which mark variants with identical weights.

    Returns:
        (table, markdown, figure, breakdown): the markdown leads with the headline table
        (:func:`r2_write.evaluation.compare.headline_table`: the main scores, length, reflections,
        a flags column; variants with identical weights in one row) and its footnotes, then the
        full table (cells of cut texts or a degenerate judge marked), then the WritingBench scores
        by requirement subset and by subdomain; ``breakdown`` is
        :func:`r2_write.evaluation.compare.breakdown_wide`.
    """
    fingerprints = [t for t in tables if "model_sha256" in t.columns]
    histories = {str(t["variant"].iloc[0]): t for t in tables if "reward/mean" in t.columns and len(t)}
    rest = [t for t in tables if "model_sha256" not in t.columns and "reward/mean" not in t.columns]
    summaries = [t for t in rest if "level" not in t.columns]
    breakdowns = [t for t in rest if "level" in t.columns]
    table = compare.comparison_table(summaries)
    if fingerprints:
        table = compare.mark_identical_weights(table, fingerprints[0], histories)
    marks, notes = compare.comparison_marks(table)
    notes += compare.identical_notes(table)
    headline, headline_marks = compare.headline_table(table, marks)
    digits = {c: 2 for c in compare.REFLECTION_COLUMNS}
    markdown = compare.to_markdown(headline, title="R2-Write evaluation: headline", marks=headline_marks,
                                   column_digits=digits)
    if notes:
        markdown += "\n" + "\n".join(notes) + "\n"
    detail = table.drop(columns=[c for c in ("model_sha256", "same_weights_reason") if c in table.columns])
    markdown += "\n" + compare.to_markdown(detail, title="Full detail: variants x metrics", marks=marks, column_digits=digits)
    markdown += (
        "\nsteps_*: reflection->revision steps in each variant's own WritingBench responses, judged before and "
        f"after (shares of scored steps; paper: >{compare.PAPER_RAISED_SHARE:.2f} raised, "
        f"~{compare.PAPER_LOWERED_SHARE:.2f} lowered); the synthesis steps are in evaluation.reflection_effects.\n"
    )
    wide = compare.breakdown_wide(breakdowns)
    sections = compare.breakdown_markdown(wide)
    if sections:
        markdown += "\n" + sections
    return table, markdown, compare.comparison_chart(table), wide


def plot_reward_and_length_dynamics(ppo_history: pd.DataFrame, ppo_outcome_history: pd.DataFrame) -> Figure:
    """PPO with the process reward and outcome-only PPO on the same axes: reward, length, reflections per step.

    Args:
        ppo_history: ``ppo.history`` (one row per PPO step).
        ppo_outcome_history: ``ppo_outcome.history``.

    Returns:
        :func:`r2_write.evaluation.dynamics.dynamics_chart` (the paper's reward and length dynamics).
    """
    return dynamics.dynamics_chart({"ppo": ppo_history, "ppo_outcome": ppo_outcome_history})


def reflection_effects(
    steps: pd.DataFrame, *variant_steps: pd.DataFrame, variants: list[str] | None = None
) -> tuple[pd.DataFrame, Figure]:
    """Share of reflection steps that raised / lowered / kept the judge score: synthesis and variants.

    Args:
        steps: ``synthesis.steps`` (id, domain, step, score_before, score_after, delta, effect).
        *variant_steps: Each evaluated variant's own steps (``evaluation.<variant>.reflection_steps``).
        variants: Their names, in the same order (bound when the pipeline is built).

    Returns:
        (table: synthesis per domain and overall, then one row per variant, with the paper's
        >55% / ~10% beside each; grouped bar chart).
    """
    names = list(variants) if variants is not None else [f"variant_{i + 1}" for i in range(len(variant_steps))]
    if len(names) != len(variant_steps):
        raise ValueError(f"{len(variant_steps)} variant step tables for {len(names)} variant names")
    table = compare.reflection_effects_table(steps, dict(zip(names, variant_steps)))
    return table, compare.reflection_effects_chart(table)
